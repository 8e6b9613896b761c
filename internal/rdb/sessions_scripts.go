package rdb

import "github.com/redis/go-redis/v9"

// All scripts touch only keys under the hash tag {pf}, so they run on Redis
// Cluster. Times are passed in from the caller in Unix milliseconds.

// acquireScript takes the session for a job when the job is at the head of
// the line and no other holder has the lock.
//
// KEYS: line, lock, fence
// ARGV: job id, token, lease ms, line ttl ms, first fence (now in µs),
// rejoin ("1": join an empty line)
// Returns {1, fence} acquired; {0, head} not the job's turn; {-1, ""} locked;
// {2, ""} the line is empty, so the job's entry is gone (it finished, or its
// entry expired or was lost). With rejoin the job joins the empty line and,
// being alone, is its head.
var acquireScript = redis.NewScript(ownerAliveLua + `
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then
  if ARGV[6] ~= '1' then
    return {2, ''}
  end
  redis.call('RPUSH', KEYS[1], ARGV[1])
  head = ARGV[1]
end
if head ~= ARGV[1] then
  return {0, head}
end
local cur = redis.call('GET', KEYS[2])
if cur and cur ~= ARGV[2] and not owner_dead(cur) then
  -- held; a holder whose worker died is taken over (the fence moves on,
  -- so it can write nothing)
  return {-1, ''}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local fence
if redis.call('EXISTS', KEYS[3]) == 1 then
  fence = redis.call('INCR', KEYS[3])
else
  -- A fence that expired starts again above every value it could have had.
  redis.call('SET', KEYS[3], ARGV[5])
  fence = tonumber(ARGV[5])
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, fence}
`)

// popHeadScript pops the head of the line if it is still the given job.
//
// KEYS: line
// ARGV: job id
// Returns 1 when popped.
var popHeadScript = redis.NewScript(`
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  return 1
end
return 0
`)

// renewScript extends the lock when it still holds the token.
//
// KEYS: lock
// ARGV: token, lease ms
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes the lock when it still holds the token.
//
// KEYS: lock
// ARGV: token
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// releaseScript takes the job out of the line, frees the lock when it still
// holds the token, and returns the new head ("" for none).
//
// KEYS: line, lock
// ARGV: job id, token
var releaseScript = redis.NewScript(`
redis.call('LREM', KEYS[1], 0, ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return redis.call('LINDEX', KEYS[1], 0) or ''
`)

// removeScript takes the job out of the line and returns the new head when
// the head changed ("" otherwise, or when the line is now empty).
//
// KEYS: line
// ARGV: job id
var removeScript = redis.NewScript(`
local before = redis.call('LINDEX', KEYS[1], 0)
redis.call('LREM', KEYS[1], 0, ARGV[1])
local after = redis.call('LINDEX', KEYS[1], 0)
if after and after ~= before then
  return after
end
return ''
`)

// saveScript writes state under the fence.
//
// KEYS: state, meta, fence, line, deleted
// ARGV: 1 fence, 2 blob, 3 digest, 4 now ms, 5 ttl ms, 6 line ttl ms,
//
//	7 cookies, 8 origins (JSON), 9 bytes, 10 "1" when the state is empty
//
// Returns {-1} stale fence, {-2} deleted under this holder, or {1, changed
// (0/1), version}.
var saveScript = redis.NewScript(`
local fence = redis.call('GET', KEYS[3])
if fence ~= ARGV[1] then
  local d = redis.call('GET', KEYS[5])
  if d and d == fence and tonumber(d) == tonumber(ARGV[1]) + 1 then
    return {-2}
  end
  return {-1}
end
local now = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local prev = redis.call('HGET', KEYS[2], 'digest')
local fresh = (not prev) or redis.call('EXISTS', KEYS[1]) == 0
local changed
if fresh then
  changed = ARGV[10] ~= '1'
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'created', ARGV[4], 'version', 1)
else
  changed = prev ~= ARGV[3]
  if changed then
    redis.call('HINCRBY', KEYS[2], 'version', 1)
  end
end
if fresh or changed then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  redis.call('HSET', KEYS[2], 'digest', ARGV[3], 'cookies', ARGV[7], 'origins', ARGV[8], 'bytes', ARGV[9])
else
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('HSET', KEYS[2], 'used', ARGV[4], 'expires', string.format('%d', now + ttl))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('PEXPIRE', KEYS[4], ARGV[6])
local version = tonumber(redis.call('HGET', KEYS[2], 'version'))
return {1, changed and 1 or 0, version}
`)

// touchScript restarts a session's expiry under the fence.
//
// KEYS: state, meta, fence, line, deleted
// ARGV: fence, now ms, ttl ms, line ttl ms
// Returns -1 stale fence, -2 deleted under this holder, 0 no session, 1
// touched.
var touchScript = redis.NewScript(`
local fence = redis.call('GET', KEYS[3])
if fence ~= ARGV[1] then
  local d = redis.call('GET', KEYS[5])
  if d and d == fence and tonumber(d) == tonumber(ARGV[1]) + 1 then
    return -2
  end
  return -1
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], 'used', ARGV[2], 'expires', string.format('%d', now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

// deleteScript removes a session's state and meta and, when there was a
// session, moves the fence on, so that a holder still running can write
// nothing afterwards (a second deletion, of nothing, leaves the fence and
// the marker alone: the holder still learns it was a deletion).
//
// KEYS: state, meta, fence, deleted
// ARGV: how long to remember the deletion (ms)
// Returns the number of keys removed (0: there was no session).
var deleteScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1], KEYS[2])
if n > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  local f = redis.call('INCR', KEYS[3])
  redis.call('SET', KEYS[4], f, 'PX', ARGV[1])
end
return n
`)

// unindexScript removes stale entries from a tenant's session index, each
// only if its score is still the one seen (a session used again meanwhile
// stays).
//
// KEYS: index
// ARGV: member, score, member, score, ...
var unindexScript = redis.NewScript(`
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
`)

// setProxyScript records, under the fence, the proxy a stored session's
// jobs leave through and, when it moved, the move (the last 10 kept).
//
// KEYS: meta, fence
// ARGV: 1 fence, 2 proxy ("pool/id"), 3 move (JSON object or "")
//
// Returns 1 when written, 0 when no session is stored, -1 for a stale fence.
var setProxyScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'proxy', ARGV[2])
if ARGV[3] ~= '' then
  local moves = {}
  local cur = redis.call('HGET', KEYS[1], 'proxy_moves')
  if cur then moves = cjson.decode(cur) end
  table.insert(moves, cjson.decode(ARGV[3]))
  while #moves > 10 do table.remove(moves, 1) end
  redis.call('HSET', KEYS[1], 'proxy_moves', cjson.encode(moves))
end
return 1
`)
