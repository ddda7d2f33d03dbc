package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/icetable"
)

// The catalog's secrets, each from its variable or the file its _FILE variable names.
var (
	tableCredential = secretSource{env: "KARCH_TABLE_CATALOG_CREDENTIAL"}
	tableToken      = secretSource{env: "KARCH_TABLE_CATALOG_TOKEN"}
	tablePassword   = secretSource{env: "KARCH_TABLE_CATALOG_PASSWORD"}
)

// tableSettings are the table_* settings: empty table means no table.
type tableSettings struct {
	name, catalog, uri, warehouse, partition string
}

func (t tableSettings) on() bool { return t.name != "" }

// tableConfig is the icetable configuration of the settings, secrets read, or an error that
// names the setting at fault.
func (c runConfig) tableConfig() (icetable.Config, error) {
	cfg := c.tableBase()
	var err error
	if cfg.Credential, err = tableCredential.read(); err != nil {
		return cfg, err
	}
	if cfg.Token, err = tableToken.read(); err != nil {
		return cfg, err
	}
	if cfg.Password, err = tablePassword.read(); err != nil {
		return cfg, err
	}
	if err := cfg.Check(); err != nil {
		return cfg, failure.Permanent(fmt.Errorf("%w: %w", coordinator.ErrConfig, err))
	}
	return cfg, nil
}

// tableBase is the icetable configuration of the settings, without the secrets.
func (c runConfig) tableBase() icetable.Config {
	t := c.table
	cfg := icetable.Config{Catalog: t.catalog, URI: t.uri, Table: t.name, Warehouse: t.warehouse, Partition: t.partition,
		Store: storeURL(c.store), S3Endpoint: c.s3.Endpoint, S3Region: c.s3.Region}
	if cfg.Catalog == icetable.CatalogSQL && cfg.Warehouse == "" {
		cfg.Warehouse = cfg.Store + "/_iceberg" // beside the pipelines: '_' begins no pipeline's name
	}
	return cfg
}

// storeURL is the store as a URL that Iceberg readers open: a directory becomes file://.
func storeURL(store string) string {
	if strings.Contains(store, "://") {
		return strings.TrimSuffix(store, "/")
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		abs = store
	}
	return "file://" + abs
}

// useTable opens the pipeline's table into deps when the settings name one, and returns
// what closes it.
func useTable(ctx context.Context, c runConfig, deps *coordinator.Deps) (func(), error) {
	tbl, closeTable, err := openTable(ctx, c)
	if err != nil {
		return nil, err
	}
	if tbl != nil {
		deps.Table = tbl // never a nil *Table in the interface
	}
	return closeTable, nil
}

// openTable opens the pipeline's table when the settings name one; nil and a no-op close
// when they do not.
func openTable(ctx context.Context, c runConfig) (*icetable.Table, func(), error) {
	if !c.table.on() {
		return nil, func() {}, nil
	}
	cfg, err := c.tableConfig()
	if err != nil {
		return nil, nil, err
	}
	t, err := icetable.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return t, func() { t.Close() }, nil
}
