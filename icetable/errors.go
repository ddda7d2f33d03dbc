package icetable

import (
	"errors"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog/rest"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/karch-archive/karch/failure"
)

// classify marks the catalog errors that a retry cannot mend as permanent: refused
// credentials or access, a request the catalog rejects, a schema or spec Iceberg rejects,
// PostgreSQL refusing the login or lacking the database. Everything else (the network, a
// catalog that is down or answers 5xx, a conflicting commit) stays retryable.
func classify(err error) error {
	if err == nil || failure.IsPermanent(err) {
		return err
	}
	for _, e := range []error{rest.ErrForbidden, rest.ErrUnauthorized, rest.ErrBadRequest, rest.ErrOAuthError,
		iceberg.ErrInvalidSchema, iceberg.ErrInvalidPartitionSpec, iceberg.ErrInvalidArgument, iceberg.ErrType} {
		if errors.Is(err, e) {
			return failure.Permanent(err)
		}
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "28") || pg.Code == "3D000" || pg.Code == "42501") {
		return failure.Permanent(err)
	}
	return err
}
