package testenv

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/icetable"
)

// IcebergSQL returns the PostgreSQL URL, password included, of the test SQL catalog.
func IcebergSQL(t testing.TB) string {
	t.Helper()
	return reachableURL(t, "KARCH_TEST_ICEBERG_SQL")
}

// IcebergREST returns the base URL of the test REST catalog.
func IcebergREST(t testing.TB) string {
	t.Helper()
	return reachableURL(t, "KARCH_TEST_ICEBERG_REST")
}

func reachableURL(t testing.TB, name string) string {
	t.Helper()
	v := mustEnv(t, name)
	u, err := url.Parse(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	reachable(t, name, u.Host)
	return v
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// IcebergTable returns the settings of a table unique to the test in the test catalog of
// kind (icetable.CatalogREST or CatalogSQL), whose data files are in the archive s3 writes
// to. The SQL catalog's password is in its URL, as a test may pass it on.
func IcebergTable(t testing.TB, kind string, s3 blob.S3Config) icetable.Config {
	t.Helper()
	name := notIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	cfg := icetable.Config{
		Catalog: kind, Table: fmt.Sprintf("karch_test.%s_%d", name, time.Now().UnixNano()), Partition: icetable.Day,
		Store: "s3://" + s3.Bucket + "/" + s3.Prefix, S3Endpoint: s3.Endpoint, S3Region: s3.Region,
		S3AccessKeyID: s3.AccessKeyID, S3SecretAccessKey: s3.SecretAccessKey,
	}
	switch kind {
	case icetable.CatalogREST:
		cfg.URI = IcebergREST(t)
	case icetable.CatalogSQL:
		cfg.URI = IcebergSQL(t)
		cfg.Warehouse = "s3://" + S3Server(t).Bucket + "/iceberg-sql"
	default:
		t.Fatalf("no test catalog %q", kind)
	}
	return cfg
}
