package cli

import (
	"testing"

	"github.com/spf13/cobra"
)

// TestConfigHint: the hint names the config in whichever form the flag was
// given (cobra parsed it: -cFILE and --config-path=FILE included), the
// values of a repeated flag space-joined, a subcommand's flag or the root's
// persistent one; the fallback when none was given.
func TestConfigHint(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"generate", "-c", "old/hs.yaml"}, "point old/hs.yaml at it"},
		{[]string{"generate", "-cold/hs.yaml"}, "point old/hs.yaml at it"},
		{[]string{"generate", "-c=old/hs.yaml"}, "point old/hs.yaml at it"},
		{[]string{"generate", "--config-path=old/hs.yaml"}, "point old/hs.yaml at it"},
		{[]string{"generate", "--config-path", "a.yaml", "-cb.yaml"}, "point a.yaml b.yaml at it"},
		{[]string{"generate", "--database-config=db.yaml", "-c", "b.yaml"}, "point b.yaml db.yaml at it"},
		{[]string{"-c", "root.yaml", "serve"}, "point root.yaml at it"},
		{[]string{"serve", "--config-path=root.yaml"}, "point root.yaml at it"},
		{[]string{"generate"}, "point the config at it"},
		{[]string{"serve"}, "point the config at it"},
	}
	for _, c := range cases {
		var rootConfigs, genConfigs, dbConfigs []string
		root := &cobra.Command{Use: "tool", SilenceErrors: true, SilenceUsage: true}
		root.PersistentFlags().StringArrayVarP(&rootConfigs, "config-path", "c", nil, "")
		generate := &cobra.Command{Use: "generate", RunE: func(*cobra.Command, []string) error { return nil }}
		generate.Flags().StringArrayVarP(&genConfigs, "config-path", "c", nil, "")
		generate.Flags().StringArrayVar(&dbConfigs, "database-config", nil, "")
		serve := &cobra.Command{Use: "serve", RunE: func(*cobra.Command, []string) error { return nil }}
		root.AddCommand(generate, serve)
		root.SetArgs(c.args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		hint := ConfigHint(root, "the config", "config-path", "database-config")
		if got := hint("point <config> at it"); got != c.want {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
		if got := hint("no config here"); got != "no config here" {
			t.Errorf("%v: a hint without <config> became %q", c.args, got)
		}
	}
}
