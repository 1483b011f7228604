package server

import (
	"context"
	"sync"
	"time"

	"hsops/internal/db"
	"hsops/schema"
	"hsops/schema/engine"
)

// bgController runs the background updates of every physical database in
// the process, one batch at a time, while the server serves. Like Synapse's
// it can be disabled and re-enabled through the admin API (not persisted),
// and it finishes the current batch before the process stops.
type bgController struct {
	s       *Server
	mu      sync.Mutex
	enabled bool
	current map[string]string // database label -> update running
	runners map[string]*schema.Runner
	wakeCh  chan struct{}
	stopCh  chan struct{}
	done    chan struct{}
	started bool
}

func newBGController(s *Server) *bgController {
	c := &bgController{s: s, enabled: true, current: map[string]string{}, runners: map[string]*schema.Runner{},
		wakeCh: make(chan struct{}, 1), stopCh: make(chan struct{}), done: make(chan struct{})}
	for _, d := range s.dbs {
		d := d
		label := d.Label
		c.runners[label] = &schema.Runner{
			DB: d, Registry: engine.Schema().Updates,
			Env:    schema.Env{Engine: d.Engine, ServerName: s.cfg.ServerName},
			Tuning: schema.Tuning(s.cfg.BackgroundUpdates), Sleep: s.cfg.BackgroundUpdates.SleepEnabled,
			OnEvent: func(ev schema.UpdateEvent) {
				c.mu.Lock()
				switch ev.Type {
				case "batch":
					c.current[label] = ev.Update
				case "done":
					delete(c.current, label)
					s.log.Infof("%s: background update %s done", d.Desc, ev.Update)
				}
				c.mu.Unlock()
			},
		}
	}
	return c
}

func (c *bgController) start() {
	c.started = true
	go c.loop()
}

func (c *bgController) wake() {
	select {
	case c.wakeCh <- struct{}{}:
	default:
	}
}

func (c *bgController) stop() {
	if !c.started {
		return
	}
	close(c.stopCh)
	<-c.done
}

func (c *bgController) isEnabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enabled
}

func (c *bgController) setEnabled(on bool) {
	c.mu.Lock()
	c.enabled = on
	c.mu.Unlock()
	if on {
		c.wake()
	}
}

// updateStatus is one database's entry in the admin API's current_updates.
type updateStatus struct {
	Name              string   `json:"name"`
	TotalItemCount    int64    `json:"total_item_count"`
	TotalDurationMS   float64  `json:"total_duration_ms"`
	AverageItemsPerMS *float64 `json:"average_items_per_ms"`
}

func (c *bgController) status() map[string]updateStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]updateStatus{}
	for label, name := range c.current {
		items, ms, rate, ok := c.runners[label].Perf(name)
		st := updateStatus{Name: name, TotalItemCount: items, TotalDurationMS: ms}
		if ok {
			st.AverageItemsPerMS = &rate
		}
		out[label] = st
	}
	return out
}

// loop runs batches until every database is done, then waits to be woken
// (a queued job, or re-enabling). Each batch gets its own context, so a stop
// request lets the batch in flight finish.
func (c *bgController) loop() {
	defer close(c.done)
	for {
		busy := false
		for _, d := range c.s.dbs {
			select {
			case <-c.stopCh:
				return
			default:
			}
			// Checked before every batch: a job queued just after the
			// updates were disabled waits for them to be enabled again.
			if !c.isEnabled() {
				busy = false
				break
			}
			done, err := c.step(d)
			if err != nil {
				c.s.log.Errorf("%s: %v", d.Desc, err)
				continue
			}
			busy = busy || !done
		}
		if busy {
			continue
		}
		select {
		case <-c.stopCh:
			return
		case <-c.wakeCh:
		case <-time.After(time.Minute):
		}
	}
}

func (c *bgController) step(d *db.DB) (bool, error) {
	r := c.runners[d.Label]
	done, err := r.Step(context.Background())
	if err != nil {
		// Back off after a failure, as Synapse retries after its sleep.
		select {
		case <-c.stopCh:
		case <-time.After(5 * time.Second):
		}
	}
	return done, err
}
