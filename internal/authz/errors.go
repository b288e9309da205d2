package authz

import (
	"errors"
	"fmt"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
)

func isPrecondition(err error) bool { return errors.Is(err, engine.ErrPreconditionFailed) }

// pageTokenError reports a page token that SpiceDB could not use as invalid
// input rather than an internal failure.
func pageTokenError(err error) error {
	if errors.Is(err, engine.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: page_token is not valid", ErrInvalid)
}
