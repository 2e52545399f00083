package runner

import "testing"

func TestReplaceAddrsMatchesWholePortsOnly(t *testing.T) {
	rp := map[string]string{"localhost:18082": "orders:8080", "127.0.0.1:18082": "orders:8080",
		"localhost:18083": "host.docker.internal:18083"}
	cases := map[string]string{
		"http://localhost:18082/x":                    "http://orders:8080/x",
		"http://127.0.0.1:18082":                      "http://orders:8080",
		"localhost:180821":                            "localhost:180821",
		"localhost:1808":                              "localhost:1808",
		"a=localhost:18082,b=localhost:18083":         "a=orders:8080,b=host.docker.internal:18083",
		"postgres://u:p@localhost:5432/db":            "postgres://u:p@localhost:5432/db",
		"no address here":                             "no address here",
		"http://localhost:18083/?next=localhost:1808": "http://host.docker.internal:18083/?next=localhost:1808",
	}
	for in, want := range cases {
		if got := replaceAddrs(rp, in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}
