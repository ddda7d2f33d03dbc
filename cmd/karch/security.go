package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"
	franzplain "github.com/twmb/franz-go/pkg/sasl/plain"
	franzscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// tlsSettings say how karch speaks TLS to one backend. Certificates and keys are named by
// path, so that they can be Secrets mounted as files.
type tlsSettings struct {
	// prefix names the settings ("kafka_tls", "redis_tls") in errors and in the shards' env.
	prefix                    string
	enabled                   bool
	caFile, certFile, keyFile string
	serverName                string
}

// on reports whether TLS is asked for: explicitly, or by naming a CA or client certificate.
func (t tlsSettings) on() bool {
	return t.enabled || t.caFile != "" || t.certFile != "" || t.keyFile != ""
}

// config is the client TLS configuration, or nil for plaintext. Every failure names the
// setting and the file, never a key's contents.
func (t tlsSettings) config() (*tls.Config, error) {
	if !t.on() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, t.bad("ca_file", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, t.bad("ca_file", fmt.Errorf("%s holds no PEM certificate", t.caFile))
		}
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, t.bad("cert_file", errors.New("a client certificate needs both cert_file and key_file"))
	}
	if t.certFile != "" {
		pair, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, t.bad("cert_file", fmt.Errorf("load %s and %s: %w", t.certFile, t.keyFile, err))
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func (t tlsSettings) bad(field string, err error) error {
	return failure.Permanent(fmt.Errorf("%w: %s_%s: %w", coordinator.ErrConfig, t.prefix, field, err))
}

// env passes the settings on to shard processes.
func (t tlsSettings) env() []string {
	if !t.on() {
		return nil
	}
	return []string{envName(t.prefix) + "=" + strconv.FormatBool(t.enabled), envName(t.prefix+"_ca_file") + "=" + t.caFile,
		envName(t.prefix+"_cert_file") + "=" + t.certFile, envName(t.prefix+"_key_file") + "=" + t.keyFile,
		envName(t.prefix+"_server_name") + "=" + t.serverName}
}

// kafkaSecurity is how every Kafka connection of a pipeline authenticates: TLS, and SASL with
// a user whose password comes only from KARCH_KAFKA_SASL_PASSWORD or a file.
type kafkaSecurity struct {
	tls           tlsSettings
	saslMechanism string
	saslUser      string
}

// The passwords karch takes, each from its variable or the file its _FILE variable names.
var (
	kafkaSASLPassword = secretSource{env: "KARCH_KAFKA_SASL_PASSWORD"}
	redisPassword     = secretSource{env: "KARCH_REDIS_PASSWORD"}
)

func (k kafkaSecurity) validate() error {
	switch strings.ToUpper(k.saslMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return failure.Permanent(fmt.Errorf("%w: kafka_sasl_mechanism: %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", coordinator.ErrConfig, k.saslMechanism))
	}
	switch {
	case (k.saslMechanism == "") != (k.saslUser == ""):
		return failure.Permanent(fmt.Errorf("%w: kafka_sasl_mechanism and kafka_sasl_username go together: give both or neither", coordinator.ErrConfig))
	case k.saslMechanism != "" && !k.tls.on():
		// A password is never sent in the clear: SASL without TLS is refused, not warned of.
		return failure.Permanent(fmt.Errorf("%w: kafka_sasl_mechanism %s needs kafka_tls: the password would cross the network in the clear", coordinator.ErrConfig, k.saslMechanism))
	}
	return nil
}

// open reads what the settings name: the TLS configuration (nil: plaintext) and, with SASL,
// the password.
func (k kafkaSecurity) open() (*tls.Config, string, error) {
	if err := k.validate(); err != nil {
		return nil, "", err
	}
	tlsConfig, err := k.tls.config()
	if err != nil || k.saslMechanism == "" {
		return tlsConfig, "", err
	}
	password, err := kafkaSASLPassword.read()
	if err == nil && password == "" {
		err = failure.Permanent(fmt.Errorf("%w: kafka_sasl_username %q has no password: set KARCH_KAFKA_SASL_PASSWORD or KARCH_KAFKA_SASL_PASSWORD_FILE", coordinator.ErrConfig, k.saslUser))
	}
	return tlsConfig, password, err
}

// dial returns what kafka-go's Transport needs: a TLS configuration (nil: plaintext) and a
// SASL mechanism (nil: none).
func (k kafkaSecurity) dial() (*tls.Config, sasl.Mechanism, error) {
	tlsConfig, password, err := k.open()
	if err != nil || k.saslMechanism == "" {
		return tlsConfig, nil, err
	}
	var mech sasl.Mechanism
	switch strings.ToUpper(k.saslMechanism) {
	case "PLAIN":
		mech = plain.Mechanism{Username: k.saslUser, Password: password}
	case "SCRAM-SHA-256":
		mech, err = scram.Mechanism(scram.SHA256, k.saslUser, password)
	case "SCRAM-SHA-512":
		mech, err = scram.Mechanism(scram.SHA512, k.saslUser, password)
	}
	if err != nil { // SASLprep refused the user name or password: say which without either
		return nil, nil, failure.Permanent(fmt.Errorf("%w: kafka_sasl_username or its password is not valid for %s", coordinator.ErrConfig, k.saslMechanism))
	}
	return tlsConfig, mech, nil
}

// env passes the settings on to shard processes; the password travels in the environment or
// the file the shards inherit, as the coordinator's does.
func (k kafkaSecurity) env() []string {
	out := k.tls.env()
	if k.saslMechanism != "" {
		out = append(out, "KARCH_KAFKA_SASL_MECHANISM="+k.saslMechanism, "KARCH_KAFKA_SASL_USERNAME="+k.saslUser)
	}
	return out
}

// secretSource is a secret read from the environment variable env, or from the file that
// env+"_FILE" names (a Kubernetes Secret mounted as a file), never both.
type secretSource struct{ env string }

func (s secretSource) read() (string, error) {
	value, file := os.Getenv(s.env), os.Getenv(s.env+"_FILE")
	switch {
	case file == "":
		return value, nil
	case value != "":
		return "", failure.Permanent(fmt.Errorf("%w: %s and %s_FILE are both set: give one", coordinator.ErrConfig, s.env, s.env))
	}
	data, err := os.ReadFile(file)
	if err != nil { // the error names the path, never the contents
		return "", failure.Permanent(fmt.Errorf("%w: %s_FILE: %w", coordinator.ErrConfig, s.env, err))
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// kafkaConn is the default reader options with what every Kafka connection of the pipeline
// carries: its client id, TLS and SASL.
func (c runConfig) kafkaConn() (shard.KafkaOptions, error) {
	opts := shard.DefaultKafkaOptions()
	var err error
	opts.ClientID = coordinator.ClientID(c.coord.Pipeline)
	opts.TLS, opts.SASL, err = c.kafkaSec.dial()
	return opts, err
}

// describe says how Kafka is spoken to, for doctor's checklist.
func (k kafkaSecurity) describe() string {
	s := "plaintext"
	if k.tls.on() {
		s = "TLS"
	}
	if k.saslMechanism != "" {
		s += ", SASL " + strings.ToUpper(k.saslMechanism) + " as " + k.saslUser
	}
	return s
}

// franzOpts are the same TLS and SASL for franz-go, the client karch restore writes with.
func (k kafkaSecurity) franzOpts() ([]kgo.Opt, error) {
	tlsConfig, password, err := k.open()
	if err != nil || tlsConfig == nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.DialTLSConfig(tlsConfig)}
	switch strings.ToUpper(k.saslMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(franzplain.Auth{User: k.saslUser, Pass: password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(franzscram.Auth{User: k.saslUser, Pass: password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(franzscram.Auth{User: k.saslUser, Pass: password}.AsSha512Mechanism()))
	}
	return opts, nil
}
