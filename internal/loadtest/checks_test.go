package loadtest

import "testing"

func TestCheckSetCountsRepeats(t *testing.T) {
	queries := make([]CheckQuery, 3)
	s, err := newCheckSet(queries)
	if err != nil {
		t.Fatalf("newCheckSet: %v", err)
	}
	for _, i := range []int{0, 1, 2} {
		s.recordSent(i)
	}
	if n := s.repeats.Load(); n != 0 {
		t.Fatalf("repeats after three new questions = %d, want 0", n)
	}
	s.recordSent(1)
	s.recordSent(1)
	if n := s.repeats.Load(); n != 2 {
		t.Fatalf("repeats after asking one question twice more = %d, want 2", n)
	}
}

func TestSkewedQuestionsStayBounded(t *testing.T) {
	for _, c := range []struct{ queries, want int }{
		{100, 100},
		{maxSkewedQuestions, maxSkewedQuestions},
		{5 * maxSkewedQuestions, maxSkewedQuestions},
	} {
		if got := skewedQuestionCount(c.queries); got != c.want {
			t.Errorf("skewedQuestionCount(%d) = %d, want %d", c.queries, got, c.want)
		}
	}
}

func TestBulksFollowSingleChecks(t *testing.T) {
	s, err := newCheckSet(make([]CheckQuery, 10*bulkSize))
	if err != nil {
		t.Fatalf("newCheckSet: %v", err)
	}
	if i, j := s.nextIndex(), s.nextIndex(); i != 1 || j != 2 {
		t.Fatalf("first single checks = %d, %d; want 1, 2", i, j)
	}
	if b := s.nextBulk(); b != 1 {
		t.Fatalf("bulk after questions 1 and 2 = %d, want 1 (questions %d to %d)", b, bulkSize, 2*bulkSize-1)
	}
	if b := s.nextBulk(); b != 2 {
		t.Fatalf("second bulk = %d, want 2", b)
	}
	if i := s.nextIndex(); i != 3*bulkSize {
		t.Fatalf("single check after two bulks = %d, want %d", i, 3*bulkSize)
	}
}
