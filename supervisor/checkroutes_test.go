package supervisor

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/devstack/devstack/proxy"
)

// A taken port that the proxy would listen on at two addresses (loopback
// and the bridge) is one conflict for the user, named once.
func TestCheckRoutesNamesATakenPortOnce(t *testing.T) {
	held, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	err = checkRoutes([]proxy.Route{
		{Service: "api", Listen: "127.0.0.1:" + port},
		{Service: "api", Listen: "127.0.0.2:" + port},
	})
	if err == nil {
		t.Fatal("no error for a taken port")
	}
	if n := strings.Count(err.Error(), "port "+port+" of service \"api\""); n != 1 {
		t.Errorf("the conflict is named %d times, want once:\n%v", n, err)
	}
}
