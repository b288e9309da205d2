package loadtest

import "testing"

func TestCheckSetCountsRepeats(t *testing.T) {
	queries := make([]CheckQuery, 3)
	s, err := newCheckSet(queries)
	if err != nil {
		t.Fatalf("newCheckSet: %v", err)
	}
	for _, i := range []int{0, 1, 2} {
		s.ask(i)
	}
	if n := s.repeats.Load(); n != 0 {
		t.Fatalf("repeats after three new questions = %d, want 0", n)
	}
	s.ask(1)
	s.ask(1)
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
