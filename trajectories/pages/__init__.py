"""Server-rendered staff pages. They read through `trajectories.store` and write through `services`."""
