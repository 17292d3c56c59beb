package schema

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
)

// EncodeValue is the wire form of a value of type ty: cty msgpack, which
// keeps unknown values and exact numbers, as Terraform's protocol does.
func EncodeValue(v cty.Value, ty cty.Type) ([]byte, error) {
	if v == cty.NilVal {
		v = cty.NullVal(ty)
	}
	b, err := ctymsgpack.Marshal(v, ty)
	if err != nil {
		return nil, fmt.Errorf("encoding value as %s: %w", ty.FriendlyName(), err)
	}
	return b, nil
}

// DecodeValue reads a value written by EncodeValue with the same type.
func DecodeValue(b []byte, ty cty.Type) (cty.Value, error) {
	if len(b) == 0 {
		return cty.NullVal(ty), nil
	}
	v, err := ctymsgpack.Unmarshal(b, ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("decoding value as %s: %w", ty.FriendlyName(), err)
	}
	return v, nil
}

// EncodeType is the wire form of a type: cty's JSON type syntax.
func EncodeType(ty cty.Type) ([]byte, error) { return ctyjson.MarshalType(ty) }

// DecodeType reads a type written by EncodeType.
func DecodeType(b []byte) (cty.Type, error) { return ctyjson.UnmarshalType(b) }

// ValueJSON renders v as JSON with its type alongside, for journals and
// machine-readable output.
func ValueJSON(v cty.Value) ([]byte, []byte, error) {
	ty := v.Type()
	vb, err := ctyjson.Marshal(v, ty)
	if err != nil {
		return nil, nil, err
	}
	tb, err := ctyjson.MarshalType(ty)
	return vb, tb, err
}

// ValueFromJSON is the inverse of ValueJSON.
func ValueFromJSON(value, typ []byte) (cty.Value, error) {
	ty, err := ctyjson.UnmarshalType(typ)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(value, ty)
}
