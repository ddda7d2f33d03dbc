package icetable

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	icebergio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // the S3 FileIO, and not the other clouds'
	"github.com/apache/iceberg-go/table"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// Catalog kinds.
const (
	CatalogREST = "rest"
	CatalogSQL  = "sql"
)

// Partition granularities of the timestamp.
const (
	Day  = "day"
	Hour = "hour"
)

// Config names a table and how to reach its catalog. The secrets (Credential, Token,
// Password) come from the environment and appear in no error and no log.
type Config struct {
	// Catalog is CatalogREST or CatalogSQL.
	Catalog string
	// URI is the REST catalog's base URL, or the SQL catalog's PostgreSQL URL without its
	// password (postgres://user@host:port/db?sslmode=...).
	URI string
	// Table is namespace.name; a namespace may have levels (a.b.name).
	Table string
	// Warehouse is where a SQL catalog puts the table's metadata (s3://bucket/prefix), or
	// the warehouse a REST catalog is asked for (as Polaris and Lakekeeper name one).
	Warehouse string
	// Partition is Day or Hour: the timestamp transform of the table's partitioning.
	Partition string
	// Credential is a REST catalog's OAuth2 client_id:client_secret; Token a bearer token.
	Credential, Token string
	// Password is the SQL catalog's PostgreSQL password.
	Password string
	// Store is the archive's URL (s3://bucket/prefix): its Parquet objects are the table's
	// data files.
	Store string
	// S3Endpoint and S3Region are how the table's files are read and written (the store's).
	S3Endpoint, S3Region string
	// S3AccessKeyID and S3SecretAccessKey are static keys; empty: the AWS default chain.
	S3AccessKeyID, S3SecretAccessKey string
}

// Check checks the settings, naming the one at fault.
func (c Config) Check() error {
	switch {
	case c.Catalog != CatalogREST && c.Catalog != CatalogSQL:
		return fmt.Errorf("table_catalog: %q: want rest or sql", c.Catalog)
	case c.URI == "":
		return errors.New("table_catalog_uri: required with a table")
	case c.Partition != Day && c.Partition != Hour:
		return fmt.Errorf("table_partition: %q: want day or hour", c.Partition)
	case c.Catalog == CatalogSQL && c.Warehouse == "":
		return errors.New("table_warehouse: required with the sql catalog")
	}
	if _, err := identOf(c.Table); err != nil {
		return err
	}
	if c.Catalog == CatalogSQL {
		if _, err := pgx.ParseConfig(c.URI); err != nil {
			return fmt.Errorf("table_catalog_uri: not a PostgreSQL URL: %v", redact(err, c.URI))
		}
	}
	return nil
}

func identOf(name string) (table.Identifier, error) {
	parts := strings.Split(name, ".")
	if len(parts) < 2 || slices.Contains(parts, "") {
		return nil, fmt.Errorf("table: %q: want namespace.name", name)
	}
	return parts, nil
}

// redact keeps a URL out of an error that quotes it: it may carry a password.
func redact(err error, uri string) string {
	return strings.ReplaceAll(err.Error(), uri, "<table_catalog_uri>")
}

// Table is one Iceberg table that a pipeline's committed windows join.
type Table struct {
	cfg   Config
	ident table.Identifier
	props iceberg.Properties
	// mu guards cat and db, which connect on first use: a catalog that is down must not
	// keep the archive from committing windows, which join the table later.
	mu  sync.Mutex
	cat catalog.Catalog
	db  *sql.DB
}

// Open checks the settings of the table; its catalog is reached on first use, and the
// table itself may not exist yet: Ensure creates it.
func Open(ctx context.Context, cfg Config) (*Table, error) {
	if err := cfg.Check(); err != nil {
		return nil, failure.Permanent(err)
	}
	ident, _ := identOf(cfg.Table)
	props := iceberg.Properties{}
	if cfg.S3Endpoint != "" {
		props[icebergio.S3EndpointURL] = cfg.S3Endpoint
	}
	if cfg.S3Region != "" {
		props[icebergio.S3Region] = cfg.S3Region
	} else if cfg.S3Endpoint != "" {
		props[icebergio.S3Region] = "us-east-1" // as blob does: an S3-compatible server takes any region
	}
	if cfg.S3AccessKeyID != "" {
		props[icebergio.S3AccessKeyID], props[icebergio.S3SecretAccessKey] = cfg.S3AccessKeyID, cfg.S3SecretAccessKey
	}
	return &Table{cfg: cfg, ident: ident, props: props}, nil
}

// catalog connects to the catalog once, and again after a failed attempt.
func (t *Table) catalog(ctx context.Context) (catalog.Catalog, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cat != nil {
		return t.cat, nil
	}
	cfg := t.cfg
	switch cfg.Catalog {
	case CatalogREST:
		opts := []rest.Option{rest.WithAdditionalProps(t.props)}
		if cfg.Warehouse != "" {
			opts = append(opts, rest.WithWarehouseLocation(cfg.Warehouse))
		}
		if cfg.Credential != "" {
			opts = append(opts, rest.WithCredential(cfg.Credential))
		}
		if cfg.Token != "" {
			opts = append(opts, rest.WithOAuthToken(cfg.Token))
		}
		cat, err := rest.NewCatalog(ctx, "karch", cfg.URI, opts...)
		if err != nil {
			return nil, classify(fmt.Errorf("table catalog %s: %w", cfg.URI, err))
		}
		t.cat = cat
	case CatalogSQL:
		pc, _ := pgx.ParseConfig(cfg.URI)
		if cfg.Password != "" {
			pc.Password = cfg.Password
		}
		db := stdlib.OpenDB(*pc)
		props := maps.Clone(t.props)
		props["warehouse"] = cfg.Warehouse
		cat, err := sqlcat.NewCatalog("karch", db, sqlcat.Postgres, props)
		if err != nil {
			db.Close()
			return nil, classify(fmt.Errorf("table catalog postgres %s:%d/%s: %w", pc.Host, pc.Port, pc.Database, err))
		}
		t.cat, t.db = cat, db
	}
	return t.cat, nil
}

// Close releases the catalog's connections.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.db != nil {
		return t.db.Close()
	}
	return nil
}

// Name is the table's namespace.name.
func (t *Table) Name() string { return t.cfg.Table }

// load reads the table's current metadata; a missing table gives catalog.ErrNoSuchTable.
func (t *Table) load(ctx context.Context) (*table.Table, error) {
	cat, err := t.catalog(ctx)
	if err != nil {
		return nil, err
	}
	tbl, err := cat.LoadTable(ctx, t.ident)
	if err != nil {
		return nil, classify(fmt.Errorf("load table %s: %w", t.cfg.Table, err))
	}
	return tbl, nil
}

// Ensure makes the table hold the typed columns cols: it creates the table, with its
// namespace, when it is absent, adds the columns it lacks (an Iceberg schema evolution,
// never a rewrite), and makes its default partitioning the one configured.
func (t *Table) Ensure(ctx context.Context, cols []archive.ValueColumn) (*table.Table, error) {
	tbl, err := t.load(ctx)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		tbl, err = t.create(ctx, cols)
	}
	if err != nil {
		return nil, err
	}
	if tbl, err = t.evolve(ctx, tbl, cols); err != nil {
		return nil, err
	}
	return t.partition(ctx, tbl)
}

// create creates the table partitioned by partition alone: that spec stays registered for
// the files whose records span more than one day or hour, and partition then adds the
// timestamp transform as the default spec.
func (t *Table) create(ctx context.Context, cols []archive.ValueColumn) (*table.Table, error) {
	cat, err := t.catalog(ctx)
	if err != nil {
		return nil, err
	}
	ns := catalog.NamespaceFromIdent(t.ident)
	if err := cat.CreateNamespace(ctx, ns, nil); err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
		return nil, classify(fmt.Errorf("create namespace %s: %w", strings.Join(ns, "."), err))
	}
	sc := schemaOf(cols)
	spec := iceberg.NewPartitionSpec(iceberg.PartitionField{SourceIDs: []int{2}, FieldID: 1000, Name: "partition", Transform: iceberg.IdentityTransform{}})
	opts := []catalog.CreateTableOpt{catalog.WithPartitionSpec(&spec), catalog.WithProperties(iceberg.Properties{
		"format-version": "2", PropertyPipelineMark: "true",
	})}
	if t.cfg.Catalog == CatalogSQL {
		opts = append(opts, catalog.WithLocation(strings.TrimSuffix(t.cfg.Warehouse, "/")+"/"+strings.Join(t.ident, "/")))
	}
	tbl, err := cat.CreateTable(ctx, t.ident, sc, opts...)
	if errors.Is(err, catalog.ErrTableAlreadyExists) {
		return t.load(ctx) // another coordinator created it first
	}
	if err != nil {
		return nil, classify(fmt.Errorf("create table %s: %w", t.cfg.Table, err))
	}
	return tbl, nil
}

// PropertyPipelineMark marks a table karch created; verify --table reads only karch's own
// snapshots as windows.
const PropertyPipelineMark = "karch.created"

// evolve adds the typed columns the table lacks, and rewrites the name mapping that tells
// readers which Parquet column is which field: karch's Parquet pieces carry no field IDs.
func (t *Table) evolve(ctx context.Context, tbl *table.Table, cols []archive.ValueColumn) (*table.Table, error) {
	missing, err := missingColumns(tbl.Schema(), cols)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("table %s: %w", t.cfg.Table, err))
	}
	if len(missing) == 0 && tbl.NameMapping() != nil {
		return tbl, nil
	}
	tx := tbl.NewTransaction()
	if len(missing) > 0 {
		us := tx.UpdateSchema(true, false)
		for _, c := range missing {
			us.AddColumn([]string{c.Name}, typeOf(c.Type), "", false, nil)
		}
		if err := us.Commit(); err != nil {
			return nil, failure.Permanent(fmt.Errorf("table %s: add columns: %w", t.cfg.Table, err))
		}
	}
	staged, err := tx.StagedTable()
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.cfg.Table, err)
	}
	if err := setNameMapping(tx, staged.Schema()); err != nil {
		return nil, err
	}
	return t.commit(ctx, tx, "add columns")
}

func setNameMapping(tx *table.Transaction, sc *iceberg.Schema) error {
	data, err := json.Marshal(sc.NameMapping())
	if err != nil {
		return fmt.Errorf("name mapping: %w", err)
	}
	return tx.SetProperties(iceberg.Properties{table.DefaultNameMappingKey: string(data)})
}

// partition makes the default spec partition by partition and the configured transform
// of timestamp; files written before under another spec keep theirs.
func (t *Table) partition(ctx context.Context, tbl *table.Table) (*table.Table, error) {
	if _, ok := timedSpec(tbl, t.cfg.Partition); ok {
		return tbl, nil
	}
	tx := tbl.NewTransaction()
	us := tx.UpdateSpec(true)
	spec := tbl.Spec()
	for _, f := range spec.Fields() {
		if f.Name != "partition" {
			us.RemoveField(f.Name)
		}
	}
	us.AddField("timestamp", transformOf(t.cfg.Partition), "timestamp_"+t.cfg.Partition)
	if err := us.Commit(); err != nil {
		return nil, fmt.Errorf("table %s: partition by %s: %w", t.cfg.Table, t.cfg.Partition, err)
	}
	return t.commit(ctx, tx, "partition by "+t.cfg.Partition)
}

func transformOf(granularity string) iceberg.Transform {
	if granularity == Hour {
		return iceberg.HourTransform{}
	}
	return iceberg.DayTransform{}
}

// timedSpec is the table's default spec if it partitions by partition and granularity of
// timestamp.
func timedSpec(tbl *table.Table, granularity string) (iceberg.PartitionSpec, bool) {
	spec := tbl.Spec()
	want := []string{"partition", "timestamp_" + granularity}
	var got []string
	for _, f := range spec.Fields() {
		got = append(got, f.Name)
	}
	return spec, slices.Equal(got, want)
}

// plainSpec is the registered spec that partitions by partition alone.
func plainSpec(tbl *table.Table) (iceberg.PartitionSpec, bool) {
	for _, s := range tbl.Metadata().PartitionSpecs() {
		if s.NumFields() == 1 && s.Field(0).Name == "partition" {
			return s, true
		}
	}
	return iceberg.PartitionSpec{}, false
}

func (t *Table) commit(ctx context.Context, tx *table.Transaction, what string) (*table.Table, error) {
	tbl, err := tx.Commit(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("table %s: commit %s: %w", t.cfg.Table, what, err))
	}
	return tbl, nil
}

// Load reads the table's current metadata; a table that does not exist gives an error
// that wraps catalog.ErrNoSuchTable.
func (t *Table) Load(ctx context.Context) (*table.Table, error) { return t.load(ctx) }
