package loadtest

import (
	"context"
	"fmt"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// importBatchSize is the number of relationships per message of the import
// stream, well below gRPC's 4 MiB default message size.
const importBatchSize = 1000

// Load writes every relationship of ds in one ImportBulkRelationships
// stream: one transaction, which SpiceDB's PostgreSQL datastore fills with
// COPY. SpiceDB validates each relationship against the schema, so a
// generator bug that writes a relationship the schema forbids fails here.
func Load(ctx context.Context, client v1.PermissionsServiceClient, ds *Dataset) error {
	stream, err := client.ImportBulkRelationships(ctx)
	if err != nil {
		return fmt.Errorf("start import: %w", err)
	}
	batch := make([]*v1.Relationship, 0, importBatchSize)
	for i, r := range ds.Relationships {
		batch = append(batch, toProto(r))
		if len(batch) == importBatchSize || i == len(ds.Relationships)-1 {
			if err := stream.Send(&v1.ImportBulkRelationshipsRequest{Relationships: batch}); err != nil {
				_, closeErr := stream.CloseAndRecv()
				return fmt.Errorf("send relationships: %w (server: %v)", err, closeErr)
			}
			batch = make([]*v1.Relationship, 0, importBatchSize)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("import relationships: %w", err)
	}
	if got := resp.GetNumLoaded(); got != uint64(len(ds.Relationships)) {
		return fmt.Errorf("import loaded %d relationships, want %d", got, len(ds.Relationships))
	}
	return nil
}

func toProto(r Relationship) *v1.Relationship {
	rel := &v1.Relationship{
		Resource: objectRef(r.Resource),
		Relation: r.Relation,
		Subject:  &v1.SubjectReference{Object: objectRef(r.Subject), OptionalRelation: r.SubjectRelation},
	}
	if !r.Expires.IsZero() {
		rel.OptionalExpiresAt = timestamppb.New(r.Expires)
	}
	return rel
}

func objectRef(o Object) *v1.ObjectReference {
	return &v1.ObjectReference{ObjectType: o.Type, ObjectId: o.ID}
}

func userRef(id string) *v1.SubjectReference {
	return &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: typeUser, ObjectId: id}}
}
