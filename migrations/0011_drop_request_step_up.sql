-- Whether a request needs a step-up (console) decision is read from its
-- signed `policy.evaluated` event (`"step_up": "console"`), which the
-- decision path checks against its hash on every decision. The side table
-- 0008 created for it could be emptied by anyone with write access to the
-- database without touching the chain, so it is no longer written or read.
DROP TABLE IF EXISTS request_step_up;
