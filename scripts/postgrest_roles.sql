-- scripts/postgrest_roles.sql: the login role PostgREST connects as.
--
--   psql -d <database> -v authenticator=coupon_authenticator \
--        -v password="'<a long random password>'" -f scripts/postgrest_roles.sql
--
-- Makes (or updates) a LOGIN NOINHERIT role that may become the anonymous
-- role and the web roles, and nothing else: PostgREST connects as it and
-- switches, per request, to the JWT's role (or to coupon_anonymous without
-- a JWT; coupon.pre_request() switches a request signed with client
-- credentials to coupon_merchant).  Run it as a superuser (or a role with
-- CREATEROLE) after CREATE EXTENSION coupon, which made the roles it grants.
-- Roles are cluster-wide: DROP EXTENSION leaves this one too.  See
-- docs/postgrest.md.
\set ON_ERROR_STOP 1
\if :{?authenticator}
\else
\set authenticator coupon_authenticator
\endif
\if :{?password}
\else
\echo 'set the password: -v password="''...''"'
\quit
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :'authenticator') AS missing \gset
\if :missing
CREATE ROLE :"authenticator" LOGIN NOINHERIT;
\endif
ALTER ROLE :"authenticator" WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :password;
GRANT coupon_anonymous, coupon_customer, coupon_merchant TO :"authenticator";
