package authn

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// newFetchCounter registers gatehouse_jwks_fetches_total with reg and
// returns it, or returns the counter that reg already holds under that name.
// It returns nil when reg is nil.
func newFetchCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	if reg == nil {
		return nil, nil
	}
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_jwks_fetches_total",
		Help: "Key set fetches by issuer name and result: success, error, or empty (no usable key). The cached keys are kept after error and empty.",
	}, []string{"issuer", "result"})

	if err := reg.Register(counter); err != nil {
		var registered prometheus.AlreadyRegisteredError
		if errors.As(err, &registered) {
			if existing, ok := registered.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return counter, nil
}
