-- Argo CD health check for the ops.superloop.dev kinds (Loop, Fleet, FleetPolicy, HandoffIntent,
-- PromotionApply). One script for all five: it reads the Ready, Reconciling and Stalled
-- conditions the superloop-ops operator writes with observedGeneration, and a few status
-- fields per kind. Installed into argocd-cm by kustomization.yaml (docs/gitops.md).
local function condition(obj, wanted)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function said(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local hs = {status = "Progressing", message = "Waiting for the superloop-ops operator"}
if obj.status == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local kind = obj.kind
local ready = condition(obj, "Ready")
local stalled = condition(obj, "Stalled")
local reasons = obj.status.reasonSummary or ""

if (kind == "Loop" or kind == "Fleet") and obj.spec ~= nil and obj.spec.suspend == true then
  return {status = "Suspended", message = "spec.suspend is true: not reconciled"}
end
if is_true(stalled) then
  return {status = "Degraded", message = said(stalled)}
end
if kind == "HandoffIntent" and ready ~= nil and ready.reason == "AwaitingApproval" then
  return {status = "Suspended", message = "waiting for approval: kubectl superloop approve " .. obj.metadata.name}
end
if not is_true(ready) or is_true(condition(obj, "Reconciling")) then
  if ready ~= nil then
    hs.message = said(ready)
  end
  return hs
end

if kind == "Loop" then
  local health = obj.status.healthStatus or "unknown"
  if health == "critical" then
    return {status = "Degraded", message = "loop health critical: " .. reasons}
  end
  if health == "degraded" then
    return {status = "Healthy", message = "loop health degraded: " .. reasons}
  end
  return {status = "Healthy", message = "loop health " .. health}
end
if kind == "Fleet" and obj.status.healthStatus == "failed" then
  return {status = "Degraded", message = "every loop failed: " .. reasons}
end
return {status = "Healthy", message = said(ready)}
