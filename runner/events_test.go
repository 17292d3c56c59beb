package runner

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJSONSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONSink(&buf)
	s.Emit(Event{Type: StepFailed, Address: "step.x", Error: "boom", Duration: time.Second})
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "step_failed", got["type"])
	assert.Equal(t, "boom", got["error"])
	assert.Equal(t, float64(time.Second), got["duration_ns"])
}
