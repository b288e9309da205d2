package engine

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/rs/zerolog"
)

// slogWriter turns SpiceDB's zerolog JSON events into slog records. SpiceDB
// logs its configuration and every start-up step at info level; in Gatehouse
// that is detail, so info and below become debug, and warnings and errors
// keep their level.
type slogWriter struct {
	logger *slog.Logger
}

var _ zerolog.LevelWriter = slogWriter{}

func (w slogWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

func (w slogWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	slogLevel := slog.LevelDebug
	switch level {
	case zerolog.WarnLevel:
		slogLevel = slog.LevelWarn
	case zerolog.ErrorLevel, zerolog.FatalLevel, zerolog.PanicLevel:
		slogLevel = slog.LevelError
	}
	ctx := context.Background()
	if !w.logger.Enabled(ctx, slogLevel) {
		return len(p), nil
	}

	var fields map[string]any
	if err := json.Unmarshal(p, &fields); err != nil {
		w.logger.Log(ctx, slogLevel, string(p), "component", "spicedb")
		return len(p), nil
	}
	message, _ := fields[zerolog.MessageFieldName].(string)
	delete(fields, zerolog.MessageFieldName)
	delete(fields, zerolog.LevelFieldName)
	delete(fields, zerolog.TimestampFieldName)

	attrs := make([]any, 0, 2+2*len(fields))
	attrs = append(attrs, "component", "spicedb")
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	w.logger.Log(ctx, slogLevel, message, attrs...)
	return len(p), nil
}

// contextWithLogger attaches a zerolog logger that writes to logger, so that
// SpiceDB's context-scoped log calls reach Gatehouse's handler. SpiceDB's
// own debug and trace events are dropped: they include every SQL statement
// with its arguments, that is relationships and audit data.
func contextWithLogger(ctx context.Context, logger *slog.Logger) context.Context {
	zl := zerolog.New(slogWriter{logger: logger}).Level(zerolog.InfoLevel)
	return zl.WithContext(ctx)
}

// contextWithDiscardLogger keeps SpiceDB's datastore constructor quiet: it
// logs at info level only which engine it builds.
func contextWithDiscardLogger(ctx context.Context) context.Context {
	zl := zerolog.Nop()
	return zl.WithContext(ctx)
}
