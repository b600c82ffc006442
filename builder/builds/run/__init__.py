"""One build attempt on a worker: the pipeline's steps, clone, log, stops, reaper."""
