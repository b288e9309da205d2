package audit

import (
	"context"
	"strings"
	"testing"
)

// TestMemoryVerifyDetectsTampering edits the entries of an in-memory log
// behind Append's back and checks that Verify names the first entry that
// no longer fits, with the reason.
func TestMemoryVerifyDetectsTampering(t *testing.T) {
	const chain = "org:acme"
	tests := []struct {
		name   string
		tamper func(m *Memory)

		// wantEntry is the index (in append order) of the entry Verify must
		// name, or -1 when it must name none because the tail is missing.
		wantEntry  int
		wantSeq    int64
		wantReason string
	}{
		{
			name:       "edited content",
			tamper:     func(m *Memory) { m.entries[2].Reason = "edited" },
			wantEntry:  2,
			wantSeq:    3,
			wantReason: "the entry was edited",
		},
		{
			name: "edited content with recomputed hash",
			tamper: func(m *Memory) {
				m.entries[2].Reason = "edited"
				m.entries[2].Hash = ComputeHash(m.entries[2])
			},
			wantEntry:  3,
			wantSeq:    4,
			wantReason: "previous hash does not match",
		},
		{
			name:       "deleted middle entry",
			tamper:     func(m *Memory) { m.entries = append(m.entries[:2:2], m.entries[3:]...) },
			wantEntry:  3,
			wantSeq:    4,
			wantReason: "entries are missing or reordered",
		},
		{
			name:       "deleted first entry",
			tamper:     func(m *Memory) { m.entries = m.entries[1:] },
			wantEntry:  1,
			wantSeq:    2,
			wantReason: "entries are missing or reordered",
		},
		{
			name:       "deleted tail entry",
			tamper:     func(m *Memory) { m.entries = m.entries[:len(m.entries)-1] },
			wantEntry:  -1,
			wantSeq:    4,
			wantReason: "entries were removed from the end",
		},
		{
			// Walk orders by Seq, so reordering means swapping sequence
			// numbers: entry 3 now claims to come second.
			name: "reordered entries",
			tamper: func(m *Memory) {
				m.entries[1].Seq, m.entries[2].Seq = m.entries[2].Seq, m.entries[1].Seq
			},
			wantEntry:  2,
			wantSeq:    2,
			wantReason: "previous hash does not match",
		},
		{
			name: "entry moved to another chain",
			tamper: func(m *Memory) {
				m.entries[1].Chain = "org:globex"
			},
			wantEntry:  2,
			wantSeq:    3,
			wantReason: "entries are missing or reordered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			m := NewMemory()
			var ids []string
			for i := range 5 {
				e, err := m.Append(ctx, Entry{Chain: chain, Kind: KindEvent, Action: "member.set", Reason: strings.Repeat("r", i+1)})
				if err != nil {
					t.Fatalf("append entry %d: %v", i, err)
				}
				ids = append(ids, e.ID)
			}
			intact, err := Verify(ctx, m)
			if err != nil {
				t.Fatalf("verify before tampering: %v", err)
			}
			if !intact.OK() {
				t.Fatalf("verify before tampering: breaks %v", intact.Breaks)
			}

			tt.tamper(m)

			report, err := Verify(ctx, m)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if report.OK() {
				t.Fatal("verify: got OK, want a break")
			}
			brk := findBreak(t, report, chain)
			wantID := ""
			if tt.wantEntry >= 0 {
				wantID = ids[tt.wantEntry]
			}
			if brk.EntryID != wantID {
				t.Errorf("break entry id: got %q, want %q (entry %d)", brk.EntryID, wantID, tt.wantEntry)
			}
			if brk.Seq != tt.wantSeq {
				t.Errorf("break seq: got %d, want %d", brk.Seq, tt.wantSeq)
			}
			if !strings.Contains(brk.Reason, tt.wantReason) {
				t.Errorf("break reason: got %q, want it to contain %q", brk.Reason, tt.wantReason)
			}
		})
	}
}

// TestMemoryVerifyDetectsMissingChain deletes every entry of one chain and
// checks that the recorded head still reveals it.
func TestMemoryVerifyDetectsMissingChain(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	for _, chain := range []string{"org:acme", "org:globex", "org:acme"} {
		if _, err := m.Append(ctx, Entry{Chain: chain, Kind: KindEvent}); err != nil {
			t.Fatalf("append to %s: %v", chain, err)
		}
	}
	m.entries = []Entry{m.entries[1]} // keep org:globex's entry only

	report, err := Verify(ctx, m)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	brk := findBreak(t, report, "org:acme")
	if !strings.Contains(brk.Reason, "entries are missing") {
		t.Errorf("break reason: got %q, want it to say the entries are missing", brk.Reason)
	}
	if len(report.Breaks) != 1 {
		t.Errorf("breaks: got %v, want only org:acme", report.Breaks)
	}
}

// findBreak returns the break that report lists for chain, failing the
// test when there is none.
func findBreak(t *testing.T, report Report, chain string) Break {
	t.Helper()
	for _, b := range report.Breaks {
		if b.Chain == chain {
			return b
		}
	}
	t.Fatalf("no break for chain %s in %v", chain, report.Breaks)
	return Break{}
}
