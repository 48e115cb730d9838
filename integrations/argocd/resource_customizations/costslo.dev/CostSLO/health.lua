-- ArgoCD health of a CostSLO (costslo.dev/v1alpha1), from the status the costslo operator writes.
-- Progressing until the operator has judged the current spec and any new revision has baked; Healthy when
-- the SLO is met (or nothing is held); Degraded when breached, blocked or invalid. The message carries the
-- operator's sentence with the numbers.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the costslo operator to evaluate this CostSLO"
  return hs
end
local generation = obj.metadata.generation or 0
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the costslo operator to judge generation " .. tostring(generation)
  return hs
end

local function condition(kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local phase = status.phase
local said = status.message or ""
local rollout = status.rollout
if phase == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "invalid spec: " .. said
  return hs
end
if phase == "TargetNotFound" then
  hs.status = "Degraded"
  hs.message = "target not found: " .. said
  return hs
end
if phase == "RolloutBlocked" or phase == "Breached" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. said
  return hs
end
if rollout ~= nil and rollout.state == "Baking" then
  hs.status = "Progressing"
  hs.message = "new revision under judgement: " .. (rollout.reason or "baking")
  return hs
end
if phase == "MetricsUnavailable" then
  local allowed = condition("RolloutAllowed")
  if allowed ~= nil and allowed.status == "True" then
    hs.status = "Healthy"
    hs.message = "not judged (onMissingMetrics: Allow): " .. said
  else
    hs.status = "Degraded"
    hs.message = "cannot judge, rollouts wait: " .. said
  end
  return hs
end
if phase == "Met" or phase == "InsufficientTraffic" then
  hs.status = "Healthy"
  hs.message = phase .. ": " .. said
  return hs
end
hs.status = "Progressing"
hs.message = phase .. ": " .. said
return hs
