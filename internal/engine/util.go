package engine

import (
	"errors"
	"io"
	"strings"
)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// isTokenProblem reports whether a SpiceDB error message is about a
// consistency token. SpiceDB reports these with generic gRPC codes, so the
// message is the only signal.
func isTokenProblem(message string) bool {
	m := strings.ToLower(message)
	return strings.Contains(m, "zedtoken") || strings.Contains(m, "revision")
}
