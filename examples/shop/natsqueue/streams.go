package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset/examples/shop/worker"
)

// ensureStreams creates or updates the work stream (migrating one with
// limits retention, see Options.Stream) and the dead stream.
func (b *Broker) ensureStreams(ctx context.Context) error {
	work := jetstream.StreamConfig{
		Name:      b.opts.Stream,
		Subjects:  []string{b.subject(worker.SubjectOrderPlaced), b.subject(worker.SubjectUserRegistered)},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy,
	}
	if err := b.ensureWorkStream(ctx, work); err != nil {
		return fmt.Errorf("stream %s: %w", work.Name, err)
	}
	dead := jetstream.StreamConfig{
		Name:     b.opts.DeadStream,
		Subjects: []string{b.subject(deadLetterSubject + ">")},
		Storage:  jetstream.FileStorage,
		MaxAge:   max(b.opts.DeadMaxAge, 0),
		MaxBytes: max(b.opts.DeadMaxBytes, -1),
		Discard:  jetstream.DiscardOld,
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, dead); err != nil {
		return fmt.Errorf("stream %s: %w", dead.Name, err)
	}
	return nil
}

// ensureWorkStream creates or updates the work stream to cfg, or migrates
// an existing stream of another retention to it when that loses nothing.
func (b *Broker) ensureWorkStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	s, err := b.js.Stream(ctx, cfg.Name)
	if err == nil && s.CachedInfo().Config.Retention != cfg.Retention {
		err = b.migrate(ctx, s, cfg)
		if err != nil {
			// Another process may have migrated it meanwhile.
			if s2, err2 := b.js.Stream(ctx, cfg.Name); err2 == nil && s2.CachedInfo().Config.Retention == cfg.Retention {
				return nil
			}
		}
		return err
	}
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = b.js.CreateOrUpdateStream(ctx, cfg)
	return err
}

// migrate replaces s, a stream with another retention than cfg's, by a
// stream of cfg when s holds nothing that its consumer has not acked and
// no other consumer reads it; otherwise it keeps s, with a warning. See
// Options.Stream.
func (b *Broker) migrate(ctx context.Context, s jetstream.Stream, cfg jetstream.StreamConfig) error {
	old := s.CachedInfo().Config
	log := b.opts.Logger.With("stream", old.Name, "retention", old.Retention.String(), "want", cfg.Retention.String())
	var others []string
	names := s.ConsumerNames(ctx)
	for name := range names.Name() { // the lister's goroutine ends with the channel
		if name != b.opts.Consumer {
			others = append(others, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("migrate: list consumers: %w", err)
	}
	if len(others) > 0 {
		log.Warn("nats: stream kept with its old retention: other consumers read it; delete it by hand to migrate", "consumers", others)
		return nil
	}

	// Freeze: with its subjects moved aside the stream stores nothing
	// more, so what is acked now stays all there is.
	frozen := old
	frozen.Subjects = []string{b.subject("poolset-migrating." + old.Name)}
	if _, err := b.js.UpdateStream(ctx, frozen); err != nil {
		return fmt.Errorf("migrate: move the subjects aside: %w", err)
	}
	left, err := b.purgeAcked(ctx, s)
	if err == nil && left == 0 {
		if err := b.js.DeleteStream(ctx, old.Name); err != nil {
			return b.unfreeze(ctx, old, fmt.Errorf("migrate: delete: %w", err))
		}
		if _, err := b.js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("migrate: deleted the stream of %s retention, but create it anew: %w", old.Retention, err)
		}
		log.Info("nats: stream recreated with the new retention; it held no message that was not acked")
		return nil
	}
	if err != nil {
		return b.unfreeze(ctx, old, fmt.Errorf("migrate: %w", err))
	}
	if err := b.unfreeze(ctx, old, nil); err != nil {
		return err
	}
	log.Warn("nats: stream kept with its old retention, which keeps acked messages until the next Open purges them: it holds messages not yet acked; a later Open migrates it once the worker has drained it",
		"not_acked", left, "consumer", b.opts.Consumer)
	return nil
}

// purgeAcked purges from s the messages below its consumer's ack floor
// (every one of them acked or terminated) and returns how many are left.
func (b *Broker) purgeAcked(ctx context.Context, s jetstream.Stream) (uint64, error) {
	c, err := s.Consumer(ctx, b.opts.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return 0, fmt.Errorf("consumer %s: %w", b.opts.Consumer, err)
	default:
		if floor := c.CachedInfo().AckFloor.Stream; floor > 0 {
			if err := s.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
				return 0, fmt.Errorf("purge the acked messages: %w", err)
			}
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// unfreeze gives the stream its subjects back, with a context of its own:
// a stream left frozen would take no publish. It returns cause, or the
// failure to unfreeze, which names the subjects to restore by hand.
func (b *Broker) unfreeze(ctx context.Context, old jetstream.StreamConfig, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := b.js.UpdateStream(ctx, old); err != nil {
		return errors.Join(cause, fmt.Errorf("migrate: give the stream its subjects %v back (do it by hand: publishes fail until then): %w", old.Subjects, err))
	}
	return cause
}
