package dbkit

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
)

// minSecret is the shortest value Scrub hides: shorter ones would blank
// ordinary words out of messages.
const minSecret = 4

// Scrub wraps p's Configure and actions so that no error they return
// carries one of the values secrets names (a password, the DSN), in clear
// or URL-escaped as a DSN holds it: a driver or a client tool that quotes
// its connection string in a message does not reach the operator's
// terminal, the journal or the log with it. secrets is asked at each error,
// so it may read the configuration Configure set.
func Scrub(p *sdk.Plugin, secrets func() []string) *sdk.Plugin {
	if conf := p.Configure; conf != nil {
		p.Configure = func(ctx context.Context, req plugins.ConfigureRequest) error {
			return ScrubError(conf(ctx, req), secrets())
		}
	}
	for _, a := range p.Actions {
		if run := a.Run; run != nil {
			a.Run = func(ctx context.Context, r *sdk.Request) (cty.Value, error) {
				v, err := run(ctx, r)
				return v, ScrubError(err, secrets())
			}
		}
		if check := a.Check; check != nil {
			a.Check = func(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
				resp, err := check(ctx, r)
				resp.Detail = ScrubText(resp.Detail, secrets())
				return resp, ScrubError(err, secrets())
			}
		}
	}
	return p
}

// ScrubText replaces every secret in s by "(sensitive)".
func ScrubText(s string, secrets []string) string {
	for _, sec := range expand(secrets) {
		s = strings.ReplaceAll(s, sec, "(sensitive)")
	}
	return s
}

// ScrubError is err with every secret replaced; an ArgError keeps its
// argument.
func ScrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := ScrubText(msg, secrets)
	if clean == msg {
		return err
	}
	if path, ok := sdk.ArgPath(err); ok {
		return sdk.ArgError(path, "%s", strings.TrimPrefix(clean, path+": "))
	}
	return errors.New(clean)
}

// expand adds each secret's URL-escaped forms, longest first so a DSN is
// hidden whole before its password is.
func expand(secrets []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= minSecret && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range secrets {
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		add(url.UserPassword("u", s).String()[2:])
	}
	for i := 1; i < len(out); i++ { // insertion sort by length, longest first
		for k := i; k > 0 && len(out[k]) > len(out[k-1]); k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	return out
}
