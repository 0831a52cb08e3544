-- "Nothing stored yet" and "partition not known" are NULL instead of -1: a sentinel inside
-- the column's range reads like a real offset or partition.
ALTER TABLE consumer_offsets ALTER COLUMN next_offset DROP NOT NULL;
UPDATE consumer_offsets SET next_offset = NULL WHERE next_offset = -1;
COMMENT ON COLUMN consumer_offsets.next_offset IS
    'next offset to consume, stored with the rows before it; NULL: nothing stored yet';

ALTER TABLE customer_profiles ALTER COLUMN partition DROP NOT NULL;
UPDATE customer_profiles SET partition = NULL WHERE partition = -1;
COMMENT ON COLUMN customer_profiles.partition IS
    'input partition of the customer''s events; NULL: not known';
