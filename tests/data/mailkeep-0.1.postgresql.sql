-- The first Mailkeep's database (tests/data/mailkeep-0.1.sql) as its models would have made it on
-- PostgreSQL (peewee's types there: SERIAL ids, BOOLEAN, TIMESTAMP), with the same rows. The first
-- Mailkeep never started on PostgreSQL; this is what an upgrade from its schema must handle there too.
CREATE TABLE "group" ("id" SERIAL NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, "description" TEXT NOT NULL, "is_default" BOOLEAN NOT NULL);
INSERT INTO "group" VALUES (1, 'Default', '', TRUE), (2, 'Customers', 'Paying ones', FALSE);
SELECT setval('group_id_seq', 2);
CREATE TABLE "credential" ("id" SERIAL NOT NULL PRIMARY KEY, "name" VARCHAR(100) NOT NULL, "description" TEXT NOT NULL, "group_id" INTEGER NOT NULL, "protocol" VARCHAR(8) NOT NULL, "host" VARCHAR(253) NOT NULL, "port" INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535), "security" VARCHAR(16) NOT NULL, "username" VARCHAR(320) NOT NULL, "password_ciphertext" TEXT, "folder" VARCHAR(255) NOT NULL, "created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, "last_test_at" TIMESTAMP, "last_test_ok" BOOLEAN, "last_test_summary" VARCHAR(300), FOREIGN KEY ("group_id") REFERENCES "group" ("id") ON DELETE RESTRICT);
INSERT INTO "credential" VALUES (1, 'Support', 'Helpdesk mailbox', 2, 'IMAP', 'imap.example.com', 993, 'ssl_tls', 'Help@Example.com', 'mk1$d12c8508212ed2ee$PwjXRHQCl342UQvsf1CLl7qoQYRb-983pATRjFyw0qxjB6D9iEULMdb5aaT7', 'INBOX', '2026-11-21 21:55:58.984911', '2026-11-21 21:55:58.985809', NULL, NULL, NULL);
INSERT INTO "credential" VALUES (2, 'Billing', 'Invoices', 1, 'POP3', 'pop.example.com', 995, 'ssl_tls', 'billing@example.com', NULL, 'INBOX', '2026-11-21 21:55:58.989887', '2026-11-21 21:55:58.989908', NULL, NULL, NULL);
SELECT setval('credential_id_seq', 2);
CREATE TABLE "customdataitem" ("id" SERIAL NOT NULL PRIMARY KEY, "credential_id" INTEGER NOT NULL, "position" INTEGER NOT NULL, "key" VARCHAR(100) NOT NULL, "value" TEXT NOT NULL, FOREIGN KEY ("credential_id") REFERENCES "credential" ("id") ON DELETE CASCADE);
INSERT INTO "customdataitem" VALUES (1, 1, 0, 'queue', 'L1');
SELECT setval('customdataitem_id_seq', 1);
CREATE TABLE "alias" ("id" SERIAL NOT NULL PRIMARY KEY, "address" VARCHAR(320) NOT NULL, "credential_id" INTEGER NOT NULL, "workspace" VARCHAR(100) NOT NULL, "project_type" VARCHAR(100) NOT NULL, "client" VARCHAR(100) NOT NULL, "description" TEXT NOT NULL, FOREIGN KEY ("credential_id") REFERENCES "credential" ("id") ON DELETE RESTRICT);
INSERT INTO "alias" VALUES (1, 'help@example.com', 1, 'Helpdesk', '', '', '');
SELECT setval('alias_id_seq', 1);
CREATE UNIQUE INDEX "group_name_ci" ON "group" (lower("name"));
CREATE INDEX "credential_group_id" ON "credential" ("group_id");
CREATE UNIQUE INDEX "credential_name_ci" ON "credential" (lower("name"));
CREATE UNIQUE INDEX "credential_mailbox" ON "credential" ("protocol", lower("host"), "port", lower("username"), "folder");
CREATE INDEX "alias_credential_id" ON "alias" ("credential_id");
CREATE UNIQUE INDEX "alias_address_ci" ON "alias" (lower("address"));
CREATE INDEX "customdataitem_credential_id" ON "customdataitem" ("credential_id");
CREATE UNIQUE INDEX "customdataitem_credential_id_key" ON "customdataitem" ("credential_id", "key");
