//! The Lua scripts of the Redis backend: each operation is one `EVALSHA` (one round trip,
//! atomic on the server), reading the server's clock (`TIME`) so that every replica sees
//! the same time. They apply the rules of `ops.rs`; times are in milliseconds.

/// KEYS[1]: the bucket. ARGV: capacity, refill per second, cost, time-to-live in ms.
/// Returns `{granted (0|1), wait in ms, remaining tokens as text}`.
pub(crate) const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cap, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'k', 'a')
local tokens, at = tonumber(s[1]), tonumber(s[2])
if tokens == nil or at == nil then tokens, at = cap, now end
if now > at then tokens = tokens + (now - at) * rate / 1000; at = now end
if tokens > cap then tokens = cap end
local granted, wait = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  granted = 1
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
local text = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'k', text, 'a', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {granted, wait, text}
"#;

/// KEYS[1]: the counter. ARGV: window in ms, sliding (`1`) or fixed (`0`), amount to add
/// (`0`: read only, nothing written). Returns the count.
pub(crate) const COUNTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local len, by = tonumber(ARGV[1]), tonumber(ARGV[3])
local index = math.floor(now / len)
local s = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local i, cur, prev = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
if i == nil then i = index end
if index ~= i then
  if index == i + 1 then prev = cur else prev = 0 end
  cur = 0
  i = index
end
if by > 0 then
  cur = cur + by
  redis.call('HSET', KEYS[1], 'i', string.format('%d', i), 'c', string.format('%d', cur), 'p', string.format('%d', prev))
  redis.call('PEXPIRE', KEYS[1], 2 * len)
end
local count = cur
if ARGV[2] == '1' then
  local w = 1 - (now - i * len) / len
  if w < 0 then w = 0 end
  count = cur + math.floor(prev * w)
end
return count
"#;

/// KEYS[1]: the value. Returns nil, or `{value, age in ms}`.
pub(crate) const GET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'v', 't')
if not s[1] then return false end
return {s[1], now - (tonumber(s[2]) or now)}
"#;

/// KEYS[1]: the value. ARGV: expected present (`1`|`0`), expected, new present (`1`|`0`),
/// new, time-to-live in ms. Returns `{1}` when swapped, `{0}` when not and there is no
/// value, `{0, value, age in ms}` when not and there is one.
pub(crate) const CAS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'v', 't')
local cur = s[1]
local matched
if ARGV[1] == '1' then matched = (cur ~= false and cur == ARGV[2]) else matched = (cur == false) end
if not matched then
  if cur == false then return {0} end
  return {0, cur, now - (tonumber(s[2]) or now)}
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 't', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return {1}
"#;
