package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/authzed/spicedb/pkg/datastore"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/maypok86/otter/v2"
)

// SpiceDB's in-process checker (pkg/embedded) evaluates a check on the
// datastore directly, without the gRPC server, its middleware, the
// encoding of the revision into a consistency token and the validation of
// that token against the datastore. It always evaluates at the head
// revision that its datastore reports. pinnedDatastore reports the
// revision pinned for the check's state instead, carried in the context,
// so that the checker evaluates where the v1 API would have.
//
// The checker reads the schema's definitions at every check, which the v1
// API serves from a cache. pinnedDatastore's readers keep the definitions
// read at each revision, because the definitions of a revision never
// change.

// headKey is the context key of the head revision that pinnedDatastore
// reports.
type headKey struct{}

// withHead returns a context in which pinnedDatastore reports head as the
// head revision.
func withHead(ctx context.Context, head datastore.RevisionWithSchemaHash) context.Context {
	return context.WithValue(ctx, headKey{}, head)
}

// maxDefinitions bounds the cached definitions, in sets: one set per
// revision and query.
const maxDefinitions = 10_000

// defKey names the definitions that one query read at one revision.
type defKey struct {
	revision string
	names    string // the names asked for, sorted and joined by commas
}

// writtenKey names one version of a definition: its name and the
// revision it was written at.
type writtenKey struct{ name, written string }

// definitions caches the definitions read at each revision. Each revision
// reads them again, but a definition written at one revision is stored
// once, whatever the revisions it was read at.
type definitions struct {
	sets    *otter.Cache[defKey, []datastore.RevisionedNamespace]
	written *otter.Cache[writtenKey, *core.NamespaceDefinition]
}

func newDefinitions() (*definitions, error) {
	sets, err := otter.New(&otter.Options[defKey, []datastore.RevisionedNamespace]{
		MaximumSize:      maxDefinitions,
		ExpiryCalculator: otter.ExpiryWriting[defKey, []datastore.RevisionedNamespace](maxReadAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create definition cache: %w", err)
	}
	written, err := otter.New(&otter.Options[writtenKey, *core.NamespaceDefinition]{MaximumSize: maxDefinitions})
	if err != nil {
		return nil, fmt.Errorf("create definition cache: %w", err)
	}
	return &definitions{sets: sets, written: written}, nil
}

// put caches found as the definitions of key. Each definition that an
// earlier read found written at the same revision is replaced by that
// read's copy. It returns a copy of the list for the caller.
func (d *definitions) put(key defKey, found []datastore.RevisionedNamespace) []datastore.RevisionedNamespace {
	shared := make([]datastore.RevisionedNamespace, len(found))
	for i, ns := range found {
		shared[i] = ns
		if ns.Definition == nil || ns.LastWrittenRevision == nil {
			continue
		}
		wk := writtenKey{name: ns.Definition.GetName(), written: ns.LastWrittenRevision.String()}
		if def, ok := d.written.GetIfPresent(wk); ok {
			shared[i].Definition = def
		} else {
			d.written.Set(wk, ns.Definition)
		}
	}
	d.sets.Set(key, shared)
	return slices.Clone(shared)
}

// pinnedDatastore is the datastore that the in-process checker reads.
type pinnedDatastore struct {
	datastore.Datastore
	defs *definitions
}

func newPinnedDatastore(ds datastore.Datastore) (pinnedDatastore, error) {
	defs, err := newDefinitions()
	if err != nil {
		return pinnedDatastore{}, err
	}
	return pinnedDatastore{Datastore: ds, defs: defs}, nil
}

// HeadRevision returns the revision carried in ctx by withHead, and else
// the datastore's.
func (d pinnedDatastore) HeadRevision(ctx context.Context) (datastore.RevisionWithSchemaHash, error) {
	if head, ok := ctx.Value(headKey{}).(datastore.RevisionWithSchemaHash); ok {
		return head, nil
	}
	return d.Datastore.HeadRevision(ctx)
}

// SnapshotReader returns a reader at rev that keeps the namespace
// definitions it reads.
func (d pinnedDatastore) SnapshotReader(rev datastore.Revision) datastore.Reader {
	reader := d.Datastore.SnapshotReader(rev)
	// Encoding a PostgreSQL revision costs more than the rest of opening
	// a reader, and the read cache's reader has done it already.
	if cached, ok := reader.(*cachingReader); ok {
		return definitionReader{Reader: reader, revKey: cached.revKey, defs: d.defs}
	}
	return definitionReader{Reader: reader, revKey: rev.String(), defs: d.defs}
}

// Unwrap returns the datastore that d reads through.
func (d pinnedDatastore) Unwrap() datastore.Datastore { return d.Datastore }

// definitionReader is a reader at one revision that serves repeated
// namespace definition reads from a cache.
type definitionReader struct {
	datastore.Reader
	revKey string
	defs   *definitions
}

func (r definitionReader) LegacyReadNamespaceByName(ctx context.Context, name string) (*core.NamespaceDefinition, datastore.Revision, error) {
	return r.defs.byName(ctx, r.revKey, name, r.Reader.LegacyReadNamespaceByName)
}

func (r definitionReader) LegacyLookupNamespacesWithNames(ctx context.Context, names []string) ([]datastore.RevisionedNamespace, error) {
	return r.defs.withNames(ctx, r.revKey, names, r.Reader.LegacyLookupNamespacesWithNames)
}

// byName returns the definition called name at the revision whose key is
// revKey, from the cache or else from read.
func (d *definitions) byName(ctx context.Context, revKey, name string,
	read func(context.Context, string) (*core.NamespaceDefinition, datastore.Revision, error),
) (*core.NamespaceDefinition, datastore.Revision, error) {
	key := defKey{revision: revKey, names: name}
	if found, ok := d.sets.GetIfPresent(key); ok && len(found) == 1 {
		return found[0].Definition, found[0].LastWrittenRevision, nil
	}
	def, rev, err := read(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	shared := d.put(key, []datastore.RevisionedNamespace{{Definition: def, LastWrittenRevision: rev}})
	return shared[0].Definition, rev, nil
}

// withNames returns the definitions called names at the revision whose key
// is revKey, from the cache or else from lookup.
func (d *definitions) withNames(ctx context.Context, revKey string, names []string,
	lookup func(context.Context, []string) ([]datastore.RevisionedNamespace, error),
) ([]datastore.RevisionedNamespace, error) {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	key := defKey{revision: revKey, names: strings.Join(slices.Compact(sorted), ",")}
	if found, ok := d.sets.GetIfPresent(key); ok {
		return slices.Clone(found), nil
	}
	found, err := lookup(ctx, names)
	if err != nil {
		return nil, err
	}
	return d.put(key, found), nil
}
