package testenv

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseCommands are the only commands a lease runs, inside and outside its scripts
// (docs/security.md, "Redis"); connecting needs nothing more.
var LeaseCommands = []string{"+set", "+get", "+del", "+pexpire", "+incr", "+eval", "+evalsha"}

// RedisUser creates an ACL user on the test Redis with a fresh password and the rules given
// (key patterns, commands), and deletes it when the test ends.
func RedisUser(t testing.TB, rules ...string) (user, password string) {
	t.Helper()
	admin := redis.NewClient(&redis.Options{Addr: Redis(t)})
	t.Cleanup(func() {
		admin.Do(context.Background(), "ACL", "DELUSER", user)
		admin.Close()
	})
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	user, password = "karch-test-"+id, "pw-"+id
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">" + password}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", user, err)
	}
	return user, password
}
