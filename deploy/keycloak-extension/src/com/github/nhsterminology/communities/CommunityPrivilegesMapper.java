package com.github.nhsterminology.communities;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.jboss.logging.Logger;
import org.keycloak.models.ClientSessionContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.ProtocolMapperContainerModel;
import org.keycloak.models.ProtocolMapperModel;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserSessionModel;
import org.keycloak.protocol.ProtocolMapperConfigException;
import org.keycloak.protocol.ProtocolMapperUtils;
import org.keycloak.protocol.oidc.mappers.AbstractOIDCProtocolMapper;
import org.keycloak.protocol.oidc.mappers.OIDCAccessTokenMapper;
import org.keycloak.protocol.oidc.mappers.OIDCAttributeMapperHelper;
import org.keycloak.protocol.oidc.mappers.TokenIntrospectionTokenMapper;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.representations.AccessToken;
import org.keycloak.representations.IDToken;
import org.keycloak.utils.RoleResolveUtil;

/**
 * Puts a user's community privileges into access tokens, in the form the
 * realm is configured for, from the realm roles the user holds.
 *
 * <p>Why a mapper rather than one client scope per community privilege:
 * Keycloak evaluates every default client scope of a client on every token
 * request, so per-community scopes made each login cost O(communities) for
 * every user, member or not. This mapper costs O(the user's own roles): it
 * reads the realm roles Keycloak has already resolved for the token (direct,
 * through groups and composites, restricted by the client's scope) and
 * translates the community ones.
 *
 * <p>A community privilege is the realm role {@code PERM_<label>_READ} or
 * {@code PERM_<label>_WRITE} (or {@code PERM_READ}/{@code PERM_WRITE}, every
 * community). With form {@code scopes} it becomes {@code grouping/<label>.read}
 * (or {@code .write}, {@code grouping/*.read}) in the token's {@code scope};
 * with {@code authorities} the role name in the {@code authorities} claim;
 * {@code both} does both. Either way the role is taken out of
 * {@code realm_access.roles} and, unless the form keeps it there, out of
 * {@code authorities}, so no privilege appears twice. {@code PERM_<label>_OWNER}
 * roles (made by earlier versions, read by nothing) are dropped.
 *
 * <p>Fails closed: an unknown form puts no community privilege anywhere.
 */
public class CommunityPrivilegesMapper extends AbstractOIDCProtocolMapper
        implements OIDCAccessTokenMapper, TokenIntrospectionTokenMapper {

    public static final String PROVIDER_ID = "communities-privileges-mapper";
    public static final String FORM = "communities.form";
    static final String SCOPES = "scopes", AUTHORITIES = "authorities", BOTH = "both";
    static final String AUTHORITIES_CLAIM = "authorities";
    /** The prefix of the scopes Ontoserver reads as community privileges. */
    static final String GROUPING = "grouping/";

    private static final Logger LOG = Logger.getLogger(CommunityPrivilegesMapper.class);
    // Labels are letters, digits and '_' (internal/label); the label may
    // itself contain '_', so only the fixed prefix and suffix delimit it.
    private static final Pattern PRIVILEGE = Pattern.compile("PERM_(?:([A-Za-z0-9_]+)_)?(READ|WRITE|OWNER)");
    private static final List<ProviderConfigProperty> CONFIG = new ArrayList<>();

    static {
        ProviderConfigProperty form = new ProviderConfigProperty();
        form.setName(FORM);
        form.setLabel("Token form");
        form.setHelpText("How community privileges go into access tokens: 'scopes' (grouping/<label>.read|write in scope), "
                + "'authorities' (PERM_<label>_READ|WRITE in authorities) or 'both'.");
        form.setType(ProviderConfigProperty.LIST_TYPE);
        form.setOptions(List.of(SCOPES, AUTHORITIES, BOTH));
        form.setDefaultValue(SCOPES);
        CONFIG.add(form);
        OIDCAttributeMapperHelper.addIncludeInTokensConfig(CONFIG, CommunityPrivilegesMapper.class);
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getDisplayType() {
        return "Community privileges";
    }

    @Override
    public String getDisplayCategory() {
        return TOKEN_MAPPER_CATEGORY;
    }

    @Override
    public String getHelpText() {
        return "Puts the user's community privileges (realm roles PERM_<label>_READ|WRITE) into the token "
                + "as grouping/<label>.read|write scopes, PERM_ authorities, or both, each once.";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return CONFIG;
    }

    // After the role mappers (40), whose output it rewrites.
    @Override
    public int getPriority() {
        return ProtocolMapperUtils.PRIORITY_ROLE_MAPPER + 5;
    }

    @Override
    public void validateConfig(KeycloakSession session, RealmModel realm, ProtocolMapperContainerModel client,
            ProtocolMapperModel model) throws ProtocolMapperConfigException {
        String form = model.getConfig().get(FORM);
        if (form != null && !List.of(SCOPES, AUTHORITIES, BOTH).contains(form)) {
            // The admin API looks the message key up in its messages (a null
            // key fails there) and falls back to the message.
            throw new ProtocolMapperConfigException("communities.form must be scopes, authorities or both, not " + form,
                    "communitiesInvalidTokenForm");
        }
    }

    @Override
    protected void setClaim(IDToken idToken, ProtocolMapperModel model, UserSessionModel userSession,
            KeycloakSession session, ClientSessionContext clientSessionCtx) {
        if (!(idToken instanceof AccessToken token)) {
            return;
        }
        String form = model.getConfig().getOrDefault(FORM, SCOPES);
        boolean scopes = SCOPES.equals(form) || BOTH.equals(form);
        boolean authorities = AUTHORITIES.equals(form) || BOTH.equals(form);
        if (!scopes && !authorities) {
            LOG.warnf("mapper %s: unknown form %s; no community privilege goes into tokens", model.getName(), form);
        }

        // Only this mapper says which community privileges a token carries:
        // a grouping/ scope from anywhere else (a client scope of that name
        // made by hand, or left by an earlier version on a client the drift
        // check does not watch) would grant one without the role. Dropping
        // them first also makes a second run on the same token (Keycloak
        // maps an introspected token again) add nothing twice.
        String before = token.getScope();
        List<String> scope = new ArrayList<>();
        if (before != null) {
            for (String s : before.split(" ")) {
                if (!s.isEmpty() && !s.startsWith(GROUPING)) {
                    scope.add(s);
                }
            }
        }
        AccessToken.Access resolved = RoleResolveUtil.getResolvedRealmRoles(session, clientSessionCtx, false);
        List<String> grouping = new ArrayList<>();
        List<String> perms = new ArrayList<>();
        Set<String> community = new TreeSet<>();
        if (resolved != null && resolved.getRoles() != null) {
            privileges(resolved.getRoles(), community, grouping, perms);
        }
        if (scopes) {
            grouping.sort(null);
            scope.addAll(grouping);
        }
        String after = String.join(" ", scope);
        if (before != null || !after.isEmpty()) {
            token.setScope(after);
        }
        if (community.isEmpty()) {
            return;
        }
        if (token.getRealmAccess() != null && token.getRealmAccess().getRoles() != null) {
            token.getRealmAccess().getRoles().removeAll(community);
        }
        Object claim = token.getOtherClaims().get(AUTHORITIES_CLAIM);
        if (claim instanceof Collection<?> existing) {
            existing.removeAll(community);
        }
        if (authorities && !perms.isEmpty()) {
            perms.sort(null);
            if (claim == null) {
                token.getOtherClaims().put(AUTHORITIES_CLAIM, new ArrayList<>(perms));
            } else if (claim instanceof Collection<?>) {
                @SuppressWarnings("unchecked")
                Collection<Object> existing = (Collection<Object>) claim;
                existing.addAll(perms);
            } else {
                // Someone else's claim of another shape: leave it, and grant less.
                LOG.warnf("mapper %s: claim %s is not a list; community authorities left out", model.getName(), AUTHORITIES_CLAIM);
            }
        }
    }

    /**
     * Sorts the privilege roles of roles into community (every one, to take
     * out of the role claims), grouping (their scopes) and perms (their
     * authorities); owner roles of earlier versions go into community only.
     */
    private static void privileges(Set<String> roles, Set<String> community, List<String> grouping, List<String> perms) {
        for (String role : roles) {
            Matcher m = PRIVILEGE.matcher(role);
            if (!m.matches()) {
                continue;
            }
            community.add(role);
            String label = m.group(1) == null ? "*" : m.group(1);
            switch (m.group(2)) {
                case "READ" -> grouping.add(GROUPING + label + ".read");
                case "WRITE" -> grouping.add(GROUPING + label + ".write");
                default -> {
                    continue; // OWNER: dropped
                }
            }
            perms.add(role);
        }
    }
}
