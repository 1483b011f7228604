package engine

import (
	"testing"

	"hsops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
