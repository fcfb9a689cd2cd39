-- One breaker, shared by all gateway replicas. Runs atomically inside Redis, so admitting probes
-- and tripping cannot race between replicas. Same rules as machine.rs (keep them in step).
--
-- KEYS[1] state hash  KEYS[2] count window (list, newest first)  KEYS[3] time window (hash,
-- "<unix second>:c|f|s" -> calls|failures|slow)  KEYS[4] probe leases (zset, score = expiry ms)
-- ARGV[1] op: acquire | record | command | peek | sync | flush (only the late successes below)
-- ARGV[2] now (unix ms, from the caller)  ARGV[3] window kind c|t  ARGV[4] window size (calls|secs)
-- ARGV[5] failure rate threshold  ARGV[6] slow call rate threshold  ARGV[7] minimum calls
-- ARGV[8] open ms  ARGV[9] max open ms  ARGV[10] probes  ARGV[11] probe lease ms  ARGV[12] key ttl ms
-- ARGV[13] successful plain calls written late: their instants (unix ms), comma-separated, oldest
--          first (may be empty); recorded before the op, each exactly as a record of it would be
-- record:  ARGV[14] probe 0|1  ARGV[15] failure 0|1  ARGV[16] slow 0|1
-- command: ARGV[14] reset | force_open | disable
-- sync:    ARGV[14] local state  ARGV[15] local consecutive trips  ARGV[16] local open-until ms
-- Returns {admitted 1|0 (-1: not an acquire), probe 0|1, retry-after ms, state, calls, failures,
--          slow calls, consecutive trips, open-until ms, probes admitted, number of changes,
--          then from, to, reason for each change}

local K_STATE, K_COUNT, K_TIME, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local kind = ARGV[3]
local wsize = tonumber(ARGV[4])
local fthr = tonumber(ARGV[5])
local sthr = tonumber(ARGV[6])
local minc = tonumber(ARGV[7])
local open_ms = tonumber(ARGV[8])
local max_open_ms = tonumber(ARGV[9])
local probes = tonumber(ARGV[10])
local lease_ms = tonumber(ARGV[11])
local ttl_ms = tonumber(ARGV[12])
local late = ARGV[13]
local writes = op ~= 'peek' or late ~= ''

local s = {st = 'closed', trips = 0, ou = 0, ep = 0, pa = 0, pd = 0, pf = 0, ps = 0}
local raw = redis.call('HGETALL', K_STATE)
for i = 1, #raw, 2 do
  if raw[i] == 'st' then s.st = raw[i + 1] else s[raw[i]] = tonumber(raw[i + 1]) or 0 end
end

local changes = {}
local dirty = false

-- Numbers passed to redis.call are formatted by Redis; millisecond instants must stay exact.
local function int(x)
  return string.format('%d', x)
end

local function go(to, reason)
  if s.st ~= to then
    changes[#changes + 1] = s.st
    changes[#changes + 1] = to
    changes[#changes + 1] = reason
  end
  s.st = to
  dirty = true
end

local function open_for(trips)
  local d, i = open_ms, 1
  while i < trips and i < 64 and d < max_open_ms do
    d = d * 2
    i = i + 1
  end
  if d > max_open_ms then d = max_open_ms end
  return d
end

local function pct(part, whole)
  if whole == 0 then return 0 end
  return part * 100 / whole
end

-- Whether failures/slow calls out of calls reach a threshold; a rate of zero never does.
local function verdict(calls, f, sl)
  if calls == 0 then return nil end
  local fr, sr = pct(f, calls), pct(sl, calls)
  if f > 0 and fr >= fthr then
    return string.format('failure rate %.1f%% >= %.1f%% over %d calls', fr, fthr, calls)
  end
  if sl > 0 and sr >= sthr then
    return string.format('slow call rate %.1f%% >= %.1f%% over %d calls', sr, sthr, calls)
  end
  return nil
end

local function window()
  if kind == 'c' then
    local items = redis.call('LRANGE', K_COUNT, 0, wsize - 1)
    local f, sl = 0, 0
    for _, v in ipairs(items) do
      local n = tonumber(v) or 0
      if n % 2 == 1 then f = f + 1 end
      if n >= 2 then sl = sl + 1 end
    end
    return #items, f, sl
  end
  local cutoff = math.floor(now / 1000) - wsize
  local fields = redis.call('HGETALL', K_TIME)
  local c, f, sl = 0, 0, 0
  for i = 1, #fields, 2 do
    local sec, col = string.match(fields[i], '^(%d+):(%a)$')
    local n = tonumber(fields[i + 1]) or 0
    if sec == nil or tonumber(sec) <= cutoff then
      if writes then redis.call('HDEL', K_TIME, fields[i]) end
    elseif col == 'c' then
      c = c + n
    elseif col == 'f' then
      f = f + n
    else
      sl = sl + n
    end
  end
  return c, f, sl
end

local function push(failure, slow, at)
  if kind == 'c' then
    redis.call('LPUSH', K_COUNT, failure + 2 * slow)
    redis.call('LTRIM', K_COUNT, 0, wsize - 1)
  else
    local sec = int(math.floor(at / 1000))
    redis.call('HINCRBY', K_TIME, sec .. ':c', 1)
    if failure == 1 then redis.call('HINCRBY', K_TIME, sec .. ':f', 1) end
    if slow == 1 then redis.call('HINCRBY', K_TIME, sec .. ':s', 1) end
  end
  dirty = true
end

local function end_episode()
  s.pa, s.pd, s.pf, s.ps = 0, 0, 0, 0
  redis.call('DEL', K_LEASE)
  dirty = true
end

local function trip(reason)
  s.trips = s.trips + 1
  s.ou = now + open_for(s.trips)
  end_episode()
  go('open', reason)
end

local function close(reason)
  s.trips, s.ou = 0, 0
  end_episode()
  redis.call('DEL', K_COUNT, K_TIME)
  go('closed', reason)
end

-- Re-opens as soon as the probes make a threshold certain; closes once all have completed.
local function evaluate_probes()
  local v = verdict(probes, s.pf, s.ps)
  if v then
    trip('probes: ' .. v)
  elseif s.pd >= probes then
    close('probes succeeded')
  end
end

-- A probe that did not report before its lease expired counts as failed.
local function expire_leases()
  if s.st ~= 'half_open' then return end
  local expired = redis.call('ZREMRANGEBYSCORE', K_LEASE, '-inf', now)
  if expired > 0 then
    s.pd = s.pd + expired
    s.pf = s.pf + expired
    dirty = true
    evaluate_probes()
  end
end

local adm, probe, retry = -1, 0, 0

-- A plain call's outcome while CLOSED: into the window, then judge it (also a success can trip,
-- when it brings the window to the minimum number of calls). At other times it is ignored.
local function record_plain(failure, slow, at)
  if s.st == 'closed' then
    push(failure, slow, at)
    local c, f, sl = window()
    if c >= minc then
      local v = verdict(c, f, sl)
      if v then trip(v) end
    end
  end
end

if late ~= '' then
  for at in string.gmatch(late, '%d+') do
    record_plain(0, 0, tonumber(at))
  end
end

local function admit_probe()
  if s.pa < probes then
    s.pa = s.pa + 1
    redis.call('ZADD', K_LEASE, int(now + lease_ms), string.format('%d:%d', s.ep, s.pa))
    adm, probe = 1, 1
    dirty = true
  else
    adm = 0
    local first = redis.call('ZRANGE', K_LEASE, 0, 0, 'WITHSCORES')
    if #first == 2 then retry = math.max(tonumber(first[2]) - now, 0) else retry = lease_ms end
  end
end

if op == 'acquire' then
  expire_leases()
  if s.st == 'closed' or s.st == 'disabled' then
    adm = 1
  elseif s.st == 'forced_open' then
    adm, retry = 0, open_ms
  elseif s.st == 'open' and now < s.ou then
    adm, retry = 0, s.ou - now
  else
    if s.st == 'open' then
      s.ep = s.ep + 1
      end_episode()
      go('half_open', 'open period elapsed')
    end
    admit_probe()
  end
elseif op == 'record' then
  local is_probe, failure, slow = ARGV[14] == '1', tonumber(ARGV[15]), tonumber(ARGV[16])
  expire_leases()
  if is_probe then
    -- Probes are interchangeable: a report settles the oldest lease; none left means this
    -- probe's lease already expired (and counted as failed), so the late report is dropped.
    if s.st == 'half_open' and #redis.call('ZPOPMIN', K_LEASE) > 0 then
      s.pd = s.pd + 1
      s.pf = s.pf + failure
      s.ps = s.ps + slow
      dirty = true
      evaluate_probes()
    end
  else
    record_plain(failure, slow, now)
  end
elseif op == 'command' then
  local cmd = ARGV[14]
  if cmd == 'reset' then
    close('operator reset')
  elseif cmd == 'force_open' then
    end_episode()
    s.ou = 0
    go('forced_open', 'operator force open')
  elseif cmd == 'disable' then
    end_episode()
    s.ou = 0
    go('disabled', 'operator disable')
  else
    return redis.error_reply('unknown breaker command ' .. cmd)
  end
elseif op == 'sync' then
  -- A replica that tripped while Redis was unreachable pushes its trip, unless the shared state
  -- already holds a trip or an operator state of its own.
  local lst, ltrips, lou = ARGV[14], tonumber(ARGV[15]), tonumber(ARGV[16])
  if lst == 'open' or lst == 'half_open' then
    local until_ms = lou
    if lst == 'half_open' or lou == 0 then until_ms = now end
    if s.st == 'closed' then
      s.trips = math.max(s.trips, ltrips)
      s.ou = until_ms
      end_episode()
      go('open', 'resynchronised: tripped while redis was unreachable')
    elseif s.st == 'open' then
      s.trips = math.max(s.trips, ltrips)
      s.ou = math.max(s.ou, until_ms)
      dirty = true
    end
  end
elseif op ~= 'peek' and op ~= 'flush' then
  return redis.error_reply('unknown breaker op ' .. op)
end

if dirty and writes then
  redis.call('HSET', K_STATE, 'st', s.st, 'trips', int(s.trips), 'ou', int(s.ou), 'ep', int(s.ep),
    'pa', int(s.pa), 'pd', int(s.pd), 'pf', int(s.pf), 'ps', int(s.ps))
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, int(ttl_ms)) end
end

local c, f, sl, pa = s.pd, s.pf, s.ps, s.pa
if s.st ~= 'half_open' then
  c, f, sl = window()
  pa = 0
end
local ou = 0
if s.st == 'open' then ou = s.ou end
local out = {adm, probe, retry, s.st, c, f, sl, s.trips, ou, pa, #changes / 3}
for _, v in ipairs(changes) do out[#out + 1] = v end
return out
