// Package parallel runs the steps of a job on a few goroutines at once
// (tables copied side by side, indexes built side by side), stopping at the
// first failure.
package parallel

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// For runs fn(ctx, i) for i in 0..n-1 on at most jobs goroutines (at least
// one), in order of i. The first error cancels the context the others run
// with, no step starts after it, and For returns it once every running step
// has returned; else it returns ctx's error, if ctx ended before every step
// ran.
func For(ctx context.Context, jobs, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for i := 0; i < n && gctx.Err() == nil; i++ {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			return fn(gctx, i)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
