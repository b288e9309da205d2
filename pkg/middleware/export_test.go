package middleware

// StreamConnected reports whether the verifier follows the auth version
// stream, so that tests can wait for it before changing versions.
func (v *Verifier) StreamConnected() bool {
	v.versions.mu.Lock()
	defer v.versions.mu.Unlock()
	return v.versions.live
}
