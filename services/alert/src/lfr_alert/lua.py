"""Lua scripts run by Redis for every change that must be atomic (see ``redis_store``).

A script runs to completion without any other command interleaving, and with AOF
``appendfsync always`` its effects reach the disk before the reply: a crash leaves either all of
a change (alert + stream entry + idempotency key + audit record) or none of it.

Each script first reads and checks everything (nothing can fail after its first write), then
writes. The audit append is shared Lua (``AUDIT_LIB``): Redis' Lua has no SHA-256, so a small
pure-Lua one (on the bundled ``bit`` library) computes the chain hash in the same atomic step —
appends are serialised by Redis itself, with no lock and no retry. ``audit_chain.canonical`` is
the Python twin of ``canonical`` below; the tests check they agree byte for byte.

Key names are passed in KEYS where known in advance; a few (the alert an existing cool-down or
idempotency key points to) are derived inside, which is fine on a single Redis (not Cluster).
"""

from __future__ import annotations

SHA256 = r"""
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit, tohex = bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256(msg)
  local bits = #msg * 8
  local pad = (55 - #msg) % 64
  local len = {}
  for i = 7, 0, -1 do
    len[#len + 1] = string.char(math.floor(bits / 2 ^ (8 * i)) % 256)
  end
  msg = msg .. '\128' .. string.rep('\0', pad) .. table.concat(len)
  local H = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local b1, b2, b3, b4 = string.byte(msg, chunk + 4 * i, chunk + 4 * i + 3)
      w[i] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
    end
    for i = 16, 63 do
      local v, u = w[i - 15], w[i - 2]
      local s0 = bxor(ror(v, 7), ror(v, 18), rshift(v, 3))
      local s1 = bxor(ror(u, 17), ror(u, 19), rshift(u, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
    for i = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(h + S1 + ch + K[i + 1] + w[i])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      local t2 = tobit(S0 + maj)
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
    end
    H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
    H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
  end
  local out = {}
  for i = 1, 8 do out[i] = tohex(H[i]) end
  return table.concat(out)
end
"""

# audit_prepare(stream, head, record_id, actor, action, args, first): reads the chain head and
# computes the next record from ARGV-style ``args[first..]`` (detail key, value, ... already in
# key order); returns the record, or nil and an error. audit_write(stream, head, record) stores
# it and cannot fail. The record's time is Redis' clock in ms, never before the previous
# record's, and is also the ms part of its stream id (so time ranges are id ranges).
AUDIT_LIB = (
    SHA256
    + r"""
local GENESIS = string.rep('0', 64)

local function netstring(parts)
  local out = {}
  for i = 1, #parts do out[i] = #parts[i] .. ':' .. parts[i] .. ',' end
  return table.concat(out)
end

local function audit_prepare(stream, head, record_id, actor, action, args, first)
  local h = redis.call('HMGET', head, 'seq', 'hash', 'ms')
  local seq, prev, last_ms = tonumber(h[1]), h[2], tonumber(h[3])
  if not seq then
    if redis.call('EXISTS', stream) == 1 then
      return nil, 'audit log ' .. stream .. ' has records but no chain head; run VerifyAuditLog'
    end
    seq, prev, last_ms = 0, GENESIS, 0
  end
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        local id_ms = tonumber(string.match(info[i + 1], '^(%d+)-'))
        if id_ms > last_ms then last_ms = id_ms end
      end
    end
  end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if ms < last_ms then ms = last_ms end
  seq = seq + 1
  local ndetails = math.floor((#args - first + 1) / 2)
  local parts = {'lfr.audit.v1', string.format('%d', seq), record_id, string.format('%d', ms),
                 actor, action, string.format('%d', ndetails)}
  local fields = {'seq', string.format('%d', seq), 'id', record_id, 'ms', string.format('%d', ms),
                  'actor', actor, 'action', action, 'prev', prev}
  for i = first, first + 2 * ndetails - 1, 2 do
    parts[#parts + 1] = args[i]
    parts[#parts + 1] = args[i + 1]
    fields[#fields + 1] = 'd.' .. args[i]
    fields[#fields + 1] = args[i + 1]
  end
  local hash = sha256(prev .. netstring(parts))
  fields[#fields + 1] = 'hash'
  fields[#fields + 1] = hash
  return {seq = seq, ms = ms, prev = prev, hash = hash, fields = fields}
end

local function audit_write(stream, head, rec)
  local pos = redis.call('XADD', stream, string.format('%d', rec.ms) .. '-*', unpack(rec.fields))
  redis.call('HSET', head, 'seq', string.format('%d', rec.seq), 'hash', rec.hash,
             'ms', string.format('%d', rec.ms))
  return pos
end
"""
)

# KEYS: 1 audit stream, 2 audit head, 3 idempotency key.
# ARGV: 1 use the idempotency key '0'|'1', 2 its ttl seconds, 3 record_id, 4 actor, 5 action,
#       6.. detail k, v, ...
# Returns {'new', seq, ms, prev, hash} | {'dup', fields of the record appended first}.
APPEND_AUDIT = (
    AUDIT_LIB
    + r"""
if ARGV[1] == '1' then
  local pos = redis.call('GET', KEYS[3])
  if pos then
    local first = redis.call('XRANGE', KEYS[1], pos, pos)
    if #first == 1 then return {'dup', first[1][2]} end
  end
end
local rec, err = audit_prepare(KEYS[1], KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV, 6)
if not rec then return redis.error_reply(err) end
local pos = audit_write(KEYS[1], KEYS[2], rec)
if ARGV[1] == '1' then
  redis.call('SET', KEYS[3], pos, 'EX', ARGV[2])
end
return {'new', string.format('%d', rec.seq), string.format('%d', rec.ms), rec.prev, rec.hash}
"""
)

# KEYS: 1 event key, 2 cool-down key, 3 alert stream, 4 new alert key, 5 expiry zset,
#       6 new alert's event set, 7 audit stream, 8 audit head.
# ARGV: 1 event_id, 2 alert_id, 3 pb, 4 cooldown_ms, 5 expires_ms, 6 alert key prefix,
#       7 record_id, 8 actor, 9 action, 10.. details.
# Returns {'replay', alert_id, 'n'|'d'} | {'dedup', alert_id} | {'new', alert_id, cursor}.
PUBLISH = (
    AUDIT_LIB
    + r"""
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'replay', string.sub(existing, 3), string.sub(existing, 1, 1)}
end
local cooldown = tonumber(ARGV[4])
if cooldown > 0 then
  local first = redis.call('GET', KEYS[2])
  if first and redis.call('EXISTS', ARGV[6] .. first) == 1 then
    redis.call('HINCRBY', ARGV[6] .. first, 'repeats', 1)
    redis.call('SET', KEYS[1], 'd:' .. first)
    redis.call('SADD', ARGV[6] .. first .. ':events', ARGV[1])
    return {'dedup', first}
  end
end
local rec, err = audit_prepare(KEYS[7], KEYS[8], ARGV[7], ARGV[8], ARGV[9], ARGV, 10)
if not rec then return redis.error_reply(err) end
local cursor = redis.call('XADD', KEYS[3], '*', 'alert_id', ARGV[2])
redis.call('HSET', KEYS[4], 'pb', ARGV[3], 'cursor', cursor, 'state', '1', 'hold', '0',
           'repeats', '0', 'expires_ms', ARGV[5])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
redis.call('SET', KEYS[1], 'n:' .. ARGV[2])
redis.call('SADD', KEYS[6], ARGV[1])
if cooldown > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', cooldown)
end
audit_write(KEYS[7], KEYS[8], rec)
return {'new', ARGV[2], cursor}
"""
)

# KEYS: 1 alert key, 2 audit stream, 3 audit head.
# ARGV: 1 new state, 2 officer, 3 decision, 4 reason, 5 decided_ms, 6 record_id, 7 actor,
#       8 action, 9.. details.
# Returns {'missing'} | {'decided', fields} | {'ok', fields}.
ADJUDICATE = (
    AUDIT_LIB
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if redis.call('HGET', KEYS[1], 'state') ~= '1' then
  return {'decided', redis.call('HGETALL', KEYS[1])}
end
local rec, err = audit_prepare(KEYS[2], KEYS[3], ARGV[6], ARGV[7], ARGV[8], ARGV, 9)
if not rec then return redis.error_reply(err) end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'officer', ARGV[2], 'decision', ARGV[3],
           'reason', ARGV[4], 'decided_ms', ARGV[5])
audit_write(KEYS[2], KEYS[3], rec)
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: 1 alert key, 2 expiry zset, 3 audit stream, 4 audit head.
# ARGV: 1 alert_id, 2 hold '0'|'1', 3 record_id, 4 actor, 5 action, 6.. details.
# Returns {'missing'} | {'same', fields} | {'ok', fields}. A held alert leaves the expiry index
# (the retention job never sees it); a released one goes back with its original expiry.
LEGAL_HOLD = (
    AUDIT_LIB
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if redis.call('HGET', KEYS[1], 'hold') == ARGV[2] then
  return {'same', redis.call('HGETALL', KEYS[1])}
end
local rec, err = audit_prepare(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5], ARGV, 6)
if not rec then return redis.error_reply(err) end
redis.call('HSET', KEYS[1], 'hold', ARGV[2])
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'expires_ms'), ARGV[1])
end
audit_write(KEYS[3], KEYS[4], rec)
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: 1 alert key, 2 its event set, 3 alert stream, 4 expiry zset, 5 audit stream, 6 audit head.
# ARGV: 1 alert_id, 2 now_ms, 3 event key prefix, 4 record_id, 5 actor, 6 action, 7.. details.
# Returns 1 when deleted, 0 when kept (held, not yet expired, or already gone).
DELETE_EXPIRED = (
    AUDIT_LIB
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local a = redis.call('HMGET', KEYS[1], 'hold', 'expires_ms', 'cursor')
if a[1] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
if tonumber(a[2]) > tonumber(ARGV[2]) then return 0 end
local rec, err = audit_prepare(KEYS[5], KEYS[6], ARGV[4], ARGV[5], ARGV[6], ARGV, 7)
if not rec then return redis.error_reply(err) end
for _, event_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('DEL', ARGV[3] .. event_id)
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('XDEL', KEYS[3], a[3])
redis.call('ZREM', KEYS[4], ARGV[1])
audit_write(KEYS[5], KEYS[6], rec)
return 1
"""
)

# KEYS: 1 alert key, 2 subscriber key. ARGV: 1 alert_id, 2 now_ms.
# Returns the alert's cursor, or nil when there is no such alert.
ACK = r"""
local cursor = redis.call('HGET', KEYS[1], 'cursor')
if not cursor then return nil end
local function parse(c)
  local ms, seq = string.match(c, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local prev = redis.call('HGET', KEYS[2], 'cursor')
local newer = true
if prev then
  local ams, aseq = parse(cursor)
  local pms, pseq = parse(prev)
  newer = ams > pms or (ams == pms and aseq > pseq)
end
if newer then
  redis.call('HSET', KEYS[2], 'cursor', cursor, 'alert_id', ARGV[1], 'acked_ms', ARGV[2])
end
return cursor
"""
