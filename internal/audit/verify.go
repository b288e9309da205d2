package audit

import (
	"context"
	"fmt"
)

// Break describes the first entry at which a chain stops verifying.
type Break struct {
	Chain   string
	EntryID string // empty when entries are missing from the end
	Seq     int64
	Reason  string
}

func (b Break) Error() string {
	if b.EntryID == "" {
		return fmt.Sprintf("chain %s: %s", b.Chain, b.Reason)
	}
	return fmt.Sprintf("chain %s: entry %s (seq %d): %s", b.Chain, b.EntryID, b.Seq, b.Reason)
}

// Report summarizes a verification.
type Report struct {
	Chains  int
	Entries int64

	// Breaks lists the first break of each chain that has one.
	Breaks []Break
}

// OK reports whether every chain verified.
func (r Report) OK() bool { return len(r.Breaks) == 0 }

// Verify walks every chain of log and checks, for each entry, that its
// sequence number follows the previous one, that it names the previous
// entry's hash, and that its own hash matches its content; and, for each
// chain, that its last entry is the recorded head. It reports the first
// break per chain.
func Verify(ctx context.Context, log Log) (Report, error) {
	var report Report
	type state struct {
		seq    int64
		hash   string
		broken bool
	}
	chains := map[string]*state{}

	err := log.Walk(ctx, func(e Entry) error {
		report.Entries++
		st, ok := chains[e.Chain]
		if !ok {
			st = &state{}
			chains[e.Chain] = st
		}
		if st.broken {
			return nil
		}
		brk := func(reason string) {
			report.Breaks = append(report.Breaks, Break{Chain: e.Chain, EntryID: e.ID, Seq: e.Seq, Reason: reason})
			st.broken = true
		}
		switch {
		case e.Seq != st.seq+1:
			brk(fmt.Sprintf("sequence number %d follows %d: entries are missing or reordered", e.Seq, st.seq))
		case e.PrevHash != st.hash:
			brk("previous hash does not match the previous entry: an entry before it was removed or replaced")
		case ComputeHash(e) != e.Hash:
			brk("hash does not match the content: the entry was edited")
		default:
			st.seq, st.hash = e.Seq, e.Hash
		}
		return nil
	})
	if err != nil {
		return report, err
	}

	heads, err := log.Heads(ctx)
	if err != nil {
		return report, err
	}
	for chain, head := range heads {
		st, ok := chains[chain]
		if !ok {
			report.Breaks = append(report.Breaks, Break{Chain: chain, Reason: fmt.Sprintf("the chain's %d entries are missing", head.Seq)})
			continue
		}
		if !st.broken && (st.seq != head.Seq || st.hash != head.Hash) {
			report.Breaks = append(report.Breaks, Break{Chain: chain, Seq: st.seq, Reason: fmt.Sprintf("the chain ends at seq %d but its head records seq %d: entries were removed from the end", st.seq, head.Seq)})
		}
	}
	report.Chains = len(chains)
	return report, nil
}
