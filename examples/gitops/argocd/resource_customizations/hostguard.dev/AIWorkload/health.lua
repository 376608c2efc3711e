-- Argo CD health check for hostguard.dev/AIWorkload. Argo CD runs it with the object as the
-- global `obj` (gopher-lua, Lua 5.1) and reads the table it returns.
--
-- hostguard's elected replica writes status.conditions[type=Compliant] after every audit:
--   Compliant=True    (Compliant, NoMatchingWorkloads) -> Healthy
--   Compliant=False   (PolicyViolation)                -> Degraded: a selected workload breaks a
--                                                         policy (the message names the first)
--   Compliant=Unknown (InvalidSpec)                    -> Degraded: the spec cannot be used
-- No Compliant condition yet, another Unknown, or a condition written for an older generation
-- -> Progressing: hostguard has not audited this version yet.
local hs = {status = "Progressing", message = "waiting for hostguard to audit this workload"}
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local compliant = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Compliant" then
    compliant = condition
  end
end
if compliant == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = compliant.observedGeneration or status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "hostguard has not audited generation " .. generation .. " yet (last: " .. observed .. ")"
  return hs
end
local message = compliant.message or ""
if compliant.status == "True" then
  hs.status = "Healthy"
elseif compliant.status == "False" or compliant.reason == "InvalidSpec" then
  hs.status = "Degraded"
  message = (compliant.reason or "NotCompliant") .. ": " .. message
end
hs.message = message
return hs
