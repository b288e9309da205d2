package expiry_test

import (
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/expiry"
)

func TestLeadGrowsWithSlowEnds(t *testing.T) {
	var lead expiry.Lead
	if got := lead.Duration(); got != expiry.MinLead {
		t.Fatalf("lead with no ends = %v, want %v", got, expiry.MinLead)
	}
	lead.Observe(300 * time.Millisecond)
	if got, want := lead.Duration(), expiry.MinLead+600*time.Millisecond; got != want {
		t.Errorf("lead after a 300ms end = %v, want %v", got, want)
	}
	lead.Observe(time.Hour)
	if got := lead.Duration(); got != expiry.MaxLead {
		t.Errorf("lead after a one-hour end = %v, want the maximum %v", got, expiry.MaxLead)
	}
}

func TestLeadDecays(t *testing.T) {
	var lead expiry.Lead
	lead.Observe(800 * time.Millisecond)
	for range 100 {
		lead.Observe(time.Millisecond)
	}
	if got := lead.Duration(); got > expiry.MinLead+10*time.Millisecond {
		t.Errorf("lead after 100 fast ends = %v, want about %v", got, expiry.MinLead)
	}
}
