// Package config loads and validates the Gatehouse configuration file, the
// YAML document that `gatehouse serve --config` reads at start-up.
//
// Decoding is strict: an unknown or misspelled key is an error, and every
// validation error names the key (for example "issuers[1].audiences") and,
// when the value came from a file, its line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// MaxFileSize is the largest configuration file, in bytes, that Load and
// Parse accept.
const MaxFileSize = 1 << 20

// DefaultSubjectClaim is the claim that identifies the principal when
// Claims.Subject is empty.
const DefaultSubjectClaim = "sub"

// File is the whole configuration file.
type File struct {
	// Issuers are the identity providers whose access tokens Gatehouse
	// accepts. An empty list is valid but accepts no token, unless the
	// caller adds an issuer of its own (as `gatehouse serve --dev` does).
	Issuers []Issuer `yaml:"issuers"`

	// Platform lists the principals with powers over every org.
	Platform Platform `yaml:"platform"`

	// Tokens configures Gatehouse's own tokens, issued by token exchange.
	Tokens Tokens `yaml:"tokens"`

	// Grants bounds temporary grants.
	Grants Grants `yaml:"grants"`

	// TrustedProxies are the networks (CIDR, such as 10.0.0.0/8) of the
	// reverse proxies in front of Gatehouse, whose X-Forwarded-For header
	// is believed when the audit log records a client address. Default:
	// none, so the direct peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// root is the parsed YAML tree when the File came from Parse. Validate
	// uses it to add line numbers to its errors.
	root *yaml.Node
}

// Load reads the configuration file at path, then decodes and validates it
// like Parse.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load config %q: %w", path, err)
	}

	file, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load config %q: %w", path, err)
	}
	return file, nil
}

// Parse decodes a configuration document and validates it. Unknown keys,
// more than one YAML document and values of the wrong type are errors, as
// is everything that Validate rejects.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config is larger than %d bytes", MaxFileSize)
	}

	var file File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, fmt.Errorf("decode config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode config: expected one YAML document, found more")
	}

	// The node tree serves only line numbers and the "given but empty" check
	// in Validate. The strict decode above has already accepted these bytes.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	file.root = &root

	if err := file.Validate(); err != nil {
		return nil, err
	}
	return &file, nil
}

// FieldError is an invalid value in the configuration.
type FieldError struct {
	// Key is the path of the value, such as "issuers[0].audiences".
	Key string
	// Line is the 1-based line of the value in the file, or 0 when unknown.
	Line int
	// Message describes the problem with the value.
	Message string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config line %d: %s: %s", e.Line, e.Key, e.Message)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Message)
}

// Platform lists principals, written as "user:<issuer name>|<subject>" or
// "service:...", with powers over every org.
type Platform struct {
	// Auditors may read every org's audit events. Default: none.
	Auditors []string `yaml:"auditors"`

	// Gateways may read every principal's auth version and follow the
	// stream of changes, to enforce token freshness in front of apps.
	// Default: none.
	Gateways []string `yaml:"gateways"`

	// BreakGlass may grant themselves any role on any resource, for at
	// most grants.breakglass_max_duration, without manage. Default: none.
	BreakGlass []string `yaml:"breakglass"`
}

// Tokens configures the tokens Gatehouse issues by token exchange.
type Tokens struct {
	// Issuer is the "iss" of Gatehouse's tokens: the external base URL of
	// this service, where /.well-known/openid-configuration is served.
	// Default: empty, which turns token exchange off (with --dev, the
	// server's own URL).
	Issuer string `yaml:"issuer"`

	// Audiences are the "aud" of every token. Default: [gatehouse].
	Audiences []string `yaml:"audiences"`

	// TTL is the lifetime of a token, such as 15m. Default: 15m; at most 24h.
	TTL time.Duration `yaml:"ttl"`
}

// TrustedProxyPrefixes returns TrustedProxies parsed; call it after
// Validate, which rejects invalid entries.
func (f *File) TrustedProxyPrefixes() []netip.Prefix {
	var prefixes []netip.Prefix
	for _, p := range f.TrustedProxies {
		if prefix, err := netip.ParsePrefix(p); err == nil {
			prefixes = append(prefixes, prefix.Masked())
		}
	}
	return prefixes
}

// Validate checks every issuer and returns all problems found, joined with
// errors.Join, each one a *FieldError. It does not contact any issuer.
func (f *File) Validate() error {
	var errs []error
	report := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Line: f.line(key), Message: fmt.Sprintf(format, args...)})
	}

	names := make(map[string]string)
	issuers := make(map[string]string)
	for i, iss := range f.Issuers {
		f.validateIssuer("issuers["+strconv.Itoa(i)+"]", iss, names, issuers, report)
	}
	for i, p := range f.Platform.Gateways {
		if _, err := object.ParseSubject(p); err != nil || strings.HasPrefix(p, object.TypeGroup+":") {
			report("platform.gateways["+strconv.Itoa(i)+"]", "%q must be a principal such as service:corp|gateway", p)
		}
	}
	if f.Tokens.Issuer != "" {
		if err := CheckURL(f.Tokens.Issuer); err != nil {
			report("tokens.issuer", "%v", err)
		} else if strings.HasSuffix(f.Tokens.Issuer, "/") {
			report("tokens.issuer", "%q must not end with a slash", f.Tokens.Issuer)
		}
		for _, iss := range f.Issuers {
			if iss.Issuer == f.Tokens.Issuer {
				report("tokens.issuer", "%q is also a configured issuer", f.Tokens.Issuer)
			}
		}
	}
	if f.Tokens.TTL < 0 || f.Tokens.TTL > 24*time.Hour {
		report("tokens.ttl", "%s must be between 1s and 24h", f.Tokens.TTL)
	}
	for i, p := range f.Platform.Auditors {
		if _, err := object.ParseSubject(p); err != nil || strings.HasPrefix(p, object.TypeGroup+":") {
			report("platform.auditors["+strconv.Itoa(i)+"]", "%q must be a principal such as user:corp|alice", p)
		}
	}
	f.validateGrants(report)
	for i, p := range f.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			report("trusted_proxies["+strconv.Itoa(i)+"]", "%q is not a network in CIDR notation, such as 10.0.0.0/8", p)
		}
	}
	return errors.Join(errs...)
}

// CheckURL returns an error unless raw is an absolute https URL with a host
// and without user info, query or fragment. An http URL is accepted only
// when its host is a loopback address (127.0.0.0/8 or ::1) or "localhost",
// so that local development needs no certificate.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q must be an absolute URL with a host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not contain user info", raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q must not contain a query or fragment", raw)
	}

	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q must use https (http is allowed only for loopback hosts)", raw)
	default:
		return fmt.Errorf("%q must use https", raw)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// line returns the line of the value at key ("issuers[0].claims.subject")
// in the parsed file, or 0 when f did not come from Parse or the key is
// absent. For an absent key it returns the line of the nearest parent that
// is present, so a missing field points at its issuer.
func (f *File) line(key string) int {
	node, _ := f.lookup(key)
	if node == nil {
		return 0
	}
	return node.Line
}

// given reports whether key is present in the parsed file.
func (f *File) given(key string) bool {
	_, found := f.lookup(key)
	return found
}

// lookup walks the parsed tree along key. It returns the deepest node that
// exists on the path and whether the whole path was found.
func (f *File) lookup(key string) (*yaml.Node, bool) {
	if f.root == nil || len(f.root.Content) == 0 {
		return nil, false
	}
	node := f.root.Content[0]

	for _, part := range splitKey(key) {
		var next *yaml.Node
		if index, err := strconv.Atoi(part); err == nil {
			if node.Kind == yaml.SequenceNode && index < len(node.Content) {
				next = node.Content[index]
			}
		} else if node.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == part {
					next = node.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return node, false
		}
		node = next
	}
	return node, true
}

// splitKey turns "issuers[0].claims.subject" into
// ["issuers", "0", "claims", "subject"].
func splitKey(key string) []string {
	key = strings.ReplaceAll(key, "[", ".")
	key = strings.ReplaceAll(key, "]", "")
	return strings.Split(key, ".")
}
