-- Portcullis account store, schema version 4: `portcullis accounts unlock --network CIDR`
-- lifts the refusals of the networks within CIDR. Such an unlock is a row of login_unlocks
-- with an empty username and the network; an unlock of a user name has no network.
ALTER TABLE login_unlocks ADD COLUMN network TEXT;
