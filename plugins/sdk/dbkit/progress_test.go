package dbkit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

func TestMeterLine(t *testing.T) {
	const mib = 1 << 20
	m := dbkit.StartMeter(&sdk.Request{}, "copy", dbkit.Bytes, 1024*mib, func() int64 { return 0 })
	defer m.Stop()
	assert.Equal(t, "copy: 412 MiB of 1.0 GiB (40%), 82 MiB/s, about 7s left", m.Line(412*mib, 5*time.Second))
	// A total that was an underestimate: never more than 100%, no time left.
	assert.Equal(t, "copy: 1.0 GiB of 1.0 GiB (100%), 220 MiB/s", m.Line(1100*mib, 5*time.Second))

	rows := dbkit.StartMeter(&sdk.Request{}, "rows", dbkit.Rows, 10_000_000, func() int64 { return 0 })
	defer rows.Stop()
	assert.Equal(t, "rows: 2.5M rows of 10.0M rows (25%), 1.2M rows/s, about 6s left", rows.Line(2_500_000, 2*time.Second))

	open := dbkit.StartMeter(&sdk.Request{}, "dump", dbkit.Bytes, 0, func() int64 { return 0 })
	defer open.Stop()
	assert.Equal(t, "dump: 1.5 KiB, 768 B/s", open.Line(1536, 2*time.Second))
}
