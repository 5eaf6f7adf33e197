"""Where an image runs. Each target is one module; they share summon.targets.base."""
