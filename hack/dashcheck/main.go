// dashcheck checks Grafana dashboard JSON files against Grafana's published dashboard schema,
// as generated into github.com/grafana/grafana-foundation-sdk/go (the `dashboard` package and
// the panel and data-query plugins it registers): every file must decode with the SDK's strict
// decoder (no unknown field, no wrong type, no missing required field, panel options and
// field config checked by the panel plugin's own type, Prometheus targets by the Prometheus
// query type) and pass the generated Validate().
//
// Usage: go run . FILE.json...
package main

import (
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashcheck FILE.json...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: ok\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// real maps the SDK's empty error list (returned as a non-nil error) to nil.
func real(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d dashboard.Dashboard
	if err := real(d.UnmarshalJSONStrict(raw)); err != nil {
		return fmt.Errorf("does not match the dashboard schema: %w", err)
	}
	if err := real(d.Validate()); err != nil {
		return fmt.Errorf("fails the schema's constraints: %w", err)
	}
	if len(d.Panels) == 0 {
		return fmt.Errorf("no panels")
	}
	return nil
}
