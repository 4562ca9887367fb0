"""The job queue shared by web and worker: enqueue, claim, heartbeat, finish, fail, cancel, requeue."""
