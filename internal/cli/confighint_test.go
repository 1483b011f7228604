package cli

import "testing"

func TestConfigHint(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"generate", "-c", "old/hs.yaml"}, "point old/hs.yaml at it"},
		{[]string{"generate", "--database-config=a.yaml", "-c", "b.yaml"}, "point a.yaml b.yaml at it"},
		{[]string{"generate"}, "point the config at it"},
		{[]string{"generate", "-c"}, "point the config at it"},
	}
	for _, c := range cases {
		hint := ConfigHint(c.args, "the config", "-c", "--database-config")
		if got := hint("point <config> at it"); got != c.want {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
	}
}
