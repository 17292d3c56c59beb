package sdk

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Decode copies v, an object such as a plugin's config (req.Config in
// Configure) or an action's arguments, into the struct target points to,
// by the `cty:"name"` tags of its fields:
//
//	type config struct {
//		Socket  string        `cty:"socket"`
//		Timeout time.Duration `cty:"timeout,positive" default:"5s"`
//		Header  []header      `cty:"header"` // a list block: each element decoded alike
//	}
//
// A null attribute leaves the field at its zero value, or at the field's
// `default` tag (written as the playbook would write it). A time.Duration
// field takes a string ("60s", "2m"); a value that does not parse, or a
// negative one, is an error (with the tag option "positive", zero too).
// Fields of struct type, pointer to struct, or slice of struct decode
// nested objects and blocks. Other fields are converted by gocty.
//
// A bad value is an ArgError that names its path ("timeout",
// "header[1].name"); a tag naming no attribute of v is a plain error: a
// mistake in the plugin, not in the playbook.
func Decode(v cty.Value, target any) error {
	return decode(v, target, "no attribute")
}

func decode(v cty.Value, target any, missing string) error {
	rv := reflect.ValueOf(target)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("Decode needs a pointer to a struct, not %T", target)
	}
	v, _ = v.UnmarkDeep()
	return decodeStruct(v, rv.Elem(), nil, missing)
}

var durationType = reflect.TypeOf(time.Duration(0))

// decodeStruct fills the struct sv from the object v found at path. At
// the top (path nil) of a value that is there, every tag must name an
// attribute: the value conforms to a schema, so a tag that names none is a
// typo in the plugin. A nested object may lack optional attributes.
func decodeStruct(v cty.Value, sv reflect.Value, path cty.Path, missing string) error {
	strict := path == nil
	switch {
	case v.IsNull():
		v, strict = cty.EmptyObjectVal, false // every field takes its default
	case !v.IsKnown():
		return ArgErrorAt(path, "the value is not known yet")
	case !v.Type().IsObjectType() && !v.Type().IsMapType():
		return ArgErrorAt(path, "an object is required, not %s", v.Type().FriendlyName())
	}
	st := sv.Type()
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("cty"), ",")
		if tag == "" || !f.IsExported() {
			continue
		}
		av := cty.NullVal(cty.DynamicPseudoType) // absent
		switch {
		case v.Type().IsObjectType() && v.Type().HasAttribute(tag):
			av = v.GetAttr(tag)
		case v.Type().IsMapType() && v.LengthInt() > 0 && v.HasIndex(cty.StringVal(tag)).True():
			av = v.Index(cty.StringVal(tag))
		case strict && !v.Type().Equals(cty.EmptyObject):
			return fmt.Errorf("field %s: %s %q", f.Name, missing, tag)
		}
		ap := append(path[:len(path):len(path)], cty.GetAttrStep{Name: tag})
		if av.IsNull() {
			def, ok := f.Tag.Lookup("default")
			if !ok {
				continue
			}
			av = cty.StringVal(def)
		}
		if !av.IsKnown() {
			return ArgErrorAt(ap, "the value is not known yet")
		}
		if err := decodeField(av, sv.Field(i), ap, strings.Contains(","+opts+",", ",positive,"), missing); err != nil {
			return err
		}
	}
	return nil
}

// decodeField sets fv from av, a known non-null value at path.
func decodeField(av cty.Value, fv reflect.Value, path cty.Path, positive bool, missing string) error {
	ft := fv.Type()
	switch {
	case ft == durationType:
		s, err := convert.Convert(av, cty.String)
		if err != nil {
			return ArgErrorAt(path, "a duration is required (write it like \"60s\" or \"2m\")")
		}
		d, err := parseDuration(path, s.AsString(), positive)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	case ft.Kind() == reflect.Struct:
		return decodeStruct(av, fv, path, missing)
	case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
		p := reflect.New(ft.Elem())
		if err := decodeStruct(av, p.Elem(), path, missing); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
		ty := av.Type()
		if !ty.IsListType() && !ty.IsTupleType() && !ty.IsSetType() {
			return ArgErrorAt(path, "a list is required, not %s", ty.FriendlyName())
		}
		out := reflect.MakeSlice(ft, 0, av.LengthInt())
		i := 0
		for it := av.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			e := reflect.New(ft.Elem()).Elem()
			if err := decodeStruct(ev, e, path.IndexInt(i), missing); err != nil {
				return err
			}
			out = reflect.Append(out, e)
		}
		fv.Set(out)
		return nil
	}
	ty, err := gocty.ImpliedType(fv.Addr().Interface())
	if err == nil {
		// Playbooks write numbers as strings and the reverse: convert as
		// HCL would before gocty, which wants the exact type.
		if cv, cerr := convert.Convert(av, ty); cerr == nil {
			av = cv
		}
	}
	if err := gocty.FromCtyValue(av, fv.Addr().Interface()); err != nil {
		var pe cty.PathError
		if errors.As(err, &pe) {
			return ArgErrorAt(append(path[:len(path):len(path)], pe.Path...), "%s", pe.Error())
		}
		return ArgErrorAt(path, "%s", err)
	}
	if positive && fv.CanInt() && fv.Int() <= 0 {
		return ArgErrorAt(path, "must be more than 0")
	}
	return nil
}

// parseDuration parses s, the value at path, as a duration: a value that
// does not parse or is negative (or, when positive, zero) is an ArgError.
func parseDuration(path cty.Path, s string, positive bool) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, ArgErrorAt(path, "%q is not a duration (write it like \"60s\" or \"2m\")", s)
	case d < 0:
		return 0, ArgErrorAt(path, "duration %q is negative", s)
	case d == 0 && positive:
		return 0, ArgErrorAt(path, "must be more than 0s")
	}
	return d, nil
}
