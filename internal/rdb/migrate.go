package rdb

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every pagefleet key. It is a hash tag, so that on a
// Redis Cluster the scripts and transactions that touch a job, its
// tenant's counters, its session and its batch at once find them in one
// slot.
const KeyPrefix = "{pf}:"

// oldKeyPrefix started pagefleet's keys before Redis Cluster support.
const oldKeyPrefix = "pf:"

// migratedKey records that MigrateKeyPrefix went through the keyspace.
const migratedKey = KeyPrefix + "migrated:prefix"

// MigrateKeyPrefix renames the keys an older pagefleet wrote ("pf:…") to
// the current prefix ("{pf}:…"), keeping their expiry, so that an upgrade
// keeps its jobs, sessions, batches and identity profiles. Both binaries
// call it at start; it scans the keyspace once (a marker key records that)
// and is safe to run from several processes at once. Stop the processes of
// the older version before starting the new one: a key they write after
// the scan keeps the old prefix. It does nothing on a cluster, where older
// versions did not run. It returns how many keys it renamed.
func MigrateKeyPrefix(ctx context.Context, rdb redis.UniversalClient) (int, error) {
	if _, cluster := rdb.(*redis.ClusterClient); cluster {
		return 0, nil
	}
	if n, err := rdb.Exists(ctx, migratedKey).Result(); err != nil || n == 1 {
		return 0, err
	}
	renamed := 0
	iter := rdb.Scan(ctx, 0, oldKeyPrefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		ok, err := rdb.RenameNX(ctx, k, KeyPrefix+strings.TrimPrefix(k, oldKeyPrefix)).Result()
		switch {
		case err != nil && strings.Contains(err.Error(), "no such key"):
			// another process renamed it first
		case err != nil:
			return renamed, err
		case ok:
			renamed++
		}
	}
	if err := iter.Err(); err != nil {
		return renamed, err
	}
	return renamed, rdb.Set(ctx, migratedKey, "1", 0).Err()
}

// MigrateAtStart runs MigrateKeyPrefix for a binary that is starting, for
// at most 30 s, and logs what it did. A failure (Redis not up yet) is
// logged and left to the next start: the binary runs on.
func MigrateAtStart(rdb redis.UniversalClient, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := MigrateKeyPrefix(ctx, rdb)
	switch {
	case err != nil:
		log.Warn("could not rename the keys of an older pagefleet; the next start tries again", "renamed", n, "err", err)
	case n > 0:
		log.Info("renamed the keys of an older pagefleet to the current prefix", "renamed", n, "prefix", KeyPrefix)
	}
}
