-- The output size each picture was asked for at (1K, 2K, 4K): its price depends on it, so /stats and
-- [limits] daily_usd estimate spend by model x size. NULL: made before sizes were recorded, or offline.
ALTER TABLE nodes ADD COLUMN image_size TEXT;
