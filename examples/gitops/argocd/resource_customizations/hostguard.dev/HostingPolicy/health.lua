-- Argo CD health check for hostguard.dev/HostingPolicy. Argo CD runs it with the object as the
-- global `obj` (gopher-lua, Lua 5.1) and reads the table it returns.
--
-- hostguard's elected replica writes status.conditions[type=Ready] after every audit:
--   Ready=True,  reason Enforced          -> Healthy (violations are the workloads' problem: the
--                                            message counts them; see AIWorkload health)
--   Ready=False, reason InvalidSpec       -> Degraded (the policy cannot be compiled: nothing of it
--                                            is enforced)
--   Ready=False, reason OverriddenByFile  -> Degraded (a --policy file of the same name is
--                                            enforced instead of this object)
-- No Ready condition yet, or one written for an older generation -> Progressing: hostguard has
-- not audited this version of the policy (it is not running, or the next audit is due).
local hs = {status = "Progressing", message = "waiting for hostguard to audit this policy"}
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = ready.observedGeneration or status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "hostguard has not audited generation " .. generation .. " yet (last: " .. observed .. ")"
  return hs
end
local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  local violations = status.violations or 0
  if violations > 0 then
    message = message .. "; " .. violations .. " violating workload(s) at the last audit"
  end
elseif ready.status == "False" then
  hs.status = "Degraded"
  message = (ready.reason or "NotReady") .. ": " .. message
end
hs.message = message
return hs
