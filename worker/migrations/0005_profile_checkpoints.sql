-- Customer profiles are written on a cadence instead of with every batch. profiles_offset is
-- the offset a partition's persisted profiles are current to: a worker that takes the
-- partition over warms them and replays the records from there to next_offset into them
-- (scoring only, nothing is written again). Moved in the same compare-and-set as next_offset.
ALTER TABLE consumer_offsets ADD COLUMN profiles_offset bigint;
-- Until now profiles were written with every batch: they are current to the stored offset.
UPDATE consumer_offsets SET profiles_offset = next_offset;
COMMENT ON COLUMN consumer_offsets.profiles_offset IS
    'offset the persisted customer profiles of the partition are current to; records from here to next_offset are replayed into them on takeover';

-- A worker of an older version still writes profiles with every batch and knows nothing of
-- this column; during a rolling upgrade its updates move profiles_offset with next_offset.
-- Workers that write on a cadence say so per session (sluice.profile_checkpoints = on).
CREATE FUNCTION profiles_follow_offsets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('sluice.profile_checkpoints', true), '') <> 'on' THEN
        NEW.profiles_offset := NEW.next_offset;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER profiles_follow_offsets BEFORE UPDATE ON consumer_offsets
    FOR EACH ROW EXECUTE FUNCTION profiles_follow_offsets();
