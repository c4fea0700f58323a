package com.github.nhsterminology.communities;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;
import java.util.stream.Stream;

import jakarta.persistence.EntityManager;
import jakarta.persistence.LockModeType;
import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.NotFoundException;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.keycloak.authorization.AuthorizationProvider;
import org.keycloak.authorization.model.Policy;
import org.keycloak.authorization.model.Resource;
import org.keycloak.authorization.model.Scope;
import org.keycloak.authorization.model.ResourceServer;
import org.keycloak.authorization.policy.provider.PolicyProviderFactory;
import org.keycloak.authorization.store.PolicyStore;
import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.ClientModel;
import org.keycloak.models.ClientScopeModel;
import org.keycloak.models.GroupModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.ModelDuplicateException;
import org.keycloak.models.ModelException;
import org.keycloak.models.RealmModel;
import org.keycloak.models.RoleModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.jpa.entities.GroupAttributeEntity;
import org.keycloak.models.jpa.entities.GroupEntity;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.models.utils.ModelToRepresentation;
import org.keycloak.representations.idm.GroupRepresentation;
import org.keycloak.representations.idm.RoleRepresentation;
import org.keycloak.representations.idm.authorization.Logic;
import org.keycloak.services.ErrorResponse;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;
import org.keycloak.util.JsonSerialization;

/**
 * The service's bulk operations on a realm, under
 * {@code /admin/realms/{realm}/communities}. None knows what a community
 * should be: the service sends its own description (names, attributes,
 * grants) and compares what comes back with it.
 *
 * <p>The survey, for the drift check. The admin REST API
 * reads groups, roles and policies one entity at a time through Keycloak's
 * cache, and at 10,000 communities (20,000 roles, 40,000 groups, 40,000
 * policies) the cache at its default size holds few of them, so a pass over
 * the REST API took 3.5 minutes, each group a few database queries. Here
 * each kind is one query. The caller names the root group and the marker
 * attribute, and what to read: {@code GET groups}, the groups directly
 * under the root ({@code name}, {@code path}, {@code attributes} with the
 * marker); {@code POST survey}, a page of communities by label with the
 * roles and policies of the names it gives. The survey's answer uses the
 * admin API's own field
 * names: {@code roles} ({@code name}, {@code attributes} with the marker),
 * {@code groups} (the label groups and their member groups: {@code name},
 * {@code path}, {@code attributes} with the marker, {@code realmRoles}),
 * {@code adminPermissions} (whether the realm's admin permissions are on),
 * {@code policies} (of the admin-permissions client: what each says, as
 * {@code GET policies} answers it) and {@code clientScopes} ({@code id},
 * {@code name}, {@code attributes}). Each needs {@code view-realm} and the
 * right to view every group, and the survey also the right to view the
 * admin permissions.
 *
 * <p>{@code POST artefacts}: makes a community's realm roles, its group with
 * its member groups, their role mappings and memberships, in one call and
 * one transaction: either all of it is made or, on any error, none. Over the
 * admin REST API that was 12 calls, each of which could be the one that
 * failed. Each part is checked with the permission the admin REST API
 * checks for it, and recorded as the same admin event.
 *
 * <p>{@code GET marked}: every marker on realm roles and community admin
 * policies, one row each, for the drift check's orphans.
 *
 * <p>{@code GET policies}: what named policies and permissions of the
 * admin-permissions client say, for the service to compare the realm-wide
 * ones every community's permissions build on.
 *
 * <p>{@code POST policies/link}: adds a policy to many aggregate policies,
 * each only if it is still as the caller read it: a realm-wide policy made
 * again goes back into every community's aggregate in a call a page.
 *
 * <p>{@code POST roles/grant}: maps a realm role to many member groups,
 * each only if it is still as the caller read it: the realm's
 * {@code community-owner} made again goes back onto every owner group in a
 * call a page.
 *
 * <p>{@code POST members}: the direct members of many groups, for
 * {@code plan} and {@code export}.
 *
 * <p>{@code GET held}: which of a few named realm roles a user holds now.
 *
 * <p>{@code POST cleanup}: removes what of a community's names carries its
 * marker, in one call and one transaction, where the admin REST API took a
 * read and 7 deletes.
 */
public class CommunitiesResource {

    private final KeycloakSession session;
    private final RealmModel realm;
    private final AdminPermissionEvaluator auth;
    private final AdminEventBuilder adminEvent;

    CommunitiesResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent) {
        this.session = session;
        this.realm = realm;
        this.auth = auth;
        this.adminEvent = adminEvent;
    }

    /** What {@code POST artefacts} makes. */
    public static class Artefacts {
        /** Id of the group the community's group goes under. */
        public String parent;
        /** Realm roles: name, description, attributes. */
        public List<RoleRepresentation> roles = List.of();
        /** The group: name, description, attributes, realmRoles (by name) and subGroups (the same, one level). */
        public GroupRepresentation group;
        /** Users (by id) to make members of the subgroup of each name. */
        public Map<String, List<String>> members = Map.of();
    }

    /** The most roles, subgroups and members one {@code POST artefacts} makes (a community needs 2, 3 and 50). */
    private static final int MAX_CREATE_ITEMS = 64;

    /**
     * Refuses (400) a body with a null where a value belongs, or more than
     * {@link #MAX_CREATE_ITEMS} of a kind, before any lookup: it would
     * otherwise fail half-way with a 500.
     */
    private static void requireWellFormed(Artefacts body) {
        List<GroupRepresentation> subs = body.group.getSubGroups() == null ? List.of() : body.group.getSubGroups();
        int members = 0;
        for (List<String> ids : body.members.values()) {
            if (ids == null || hasNull(ids)) {
                throw ErrorResponse.error("a member list is null or holds a null", Response.Status.BAD_REQUEST);
            }
            members += ids.size();
        }
        if (body.roles.size() > MAX_CREATE_ITEMS || subs.size() > MAX_CREATE_ITEMS || members > MAX_CREATE_ITEMS) {
            throw ErrorResponse.error("at most " + MAX_CREATE_ITEMS + " roles, subgroups and members a call", Response.Status.BAD_REQUEST);
        }
        if (hasNull(body.roles) || hasNull(subs)) {
            throw ErrorResponse.error("a role or subgroup is null", Response.Status.BAD_REQUEST);
        }
        for (RoleRepresentation r : body.roles) {
            requireValues(r.getAttributes());
        }
        List<GroupRepresentation> groups = new ArrayList<>(subs);
        groups.add(body.group);
        for (GroupRepresentation g : groups) {
            requireValues(g.getAttributes());
            if (g.getRealmRoles() != null && hasNull(g.getRealmRoles())) {
                throw ErrorResponse.error("a role mapping names no role", Response.Status.BAD_REQUEST);
            }
        }
    }

    /** Unlike {@code contains(null)}, which {@code List.of()} answers with an exception. */
    private static boolean hasNull(Collection<?> c) {
        return c.stream().anyMatch(Objects::isNull);
    }

    private static void requireValues(Map<String, List<String>> attributes) {
        if (attributes == null) {
            return;
        }
        for (Map.Entry<String, List<String>> e : attributes.entrySet()) {
            if (e.getKey() == null || e.getValue() == null || hasNull(e.getValue())) {
                throw ErrorResponse.error("an attribute is null or holds a null", Response.Status.BAD_REQUEST);
            }
        }
    }

    /**
     * Makes body's roles and groups and answers 201 with their ids:
     * {@code {"roles": {name: id}, "groups": {path: id}}}. A role or group
     * that exists already is 409 ({@code errorMessage} names it); a role
     * mapping that names no role is 400, a member who is no user 404; in
     * each case Keycloak rolls the whole transaction back.
     */
    @POST
    @Path("artefacts")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Response create(Artefacts body) {
        if (body == null || blank(body.parent) || body.group == null || blank(body.group.getName())
                || body.roles == null || body.members == null) {
            throw ErrorResponse.error("parent and group.name are required", Response.Status.BAD_REQUEST);
        }
        requireWellFormed(body);
        GroupModel parent = realm.getGroupById(body.parent);
        if (parent == null) {
            throw new NotFoundException("parent group not found");
        }
        auth.groups().requireManage(parent);
        if (!body.roles.isEmpty()) {
            auth.roles().requireManage(realm);
        }
        Map<String, String> roleIds = new LinkedHashMap<>();
        for (RoleRepresentation r : body.roles) {
            if (blank(r.getName())) {
                throw ErrorResponse.error("a role has no name", Response.Status.BAD_REQUEST);
            }
            if (realm.getRole(r.getName()) != null) {
                throw ErrorResponse.exists("realm role " + r.getName());
            }
            RoleModel role = realm.addRole(r.getName());
            role.setDescription(r.getDescription());
            if (r.getAttributes() != null) {
                r.getAttributes().forEach(role::setAttribute);
            }
            roleIds.put(role.getName(), role.getId());
            adminEvent.operation(OperationType.CREATE).resource(ResourceType.REALM_ROLE)
                    .resourcePath("roles", role.getName()).representation(r).success();
        }
        Map<String, String> groupIds = new LinkedHashMap<>();
        Map<String, GroupModel> children = new HashMap<>();
        GroupModel group = makeGroup(parent, body.group, groupIds);
        List<GroupRepresentation> subGroups = body.group.getSubGroups() == null ? List.of() : body.group.getSubGroups();
        for (GroupRepresentation sub : subGroups) {
            if (sub.getSubGroups() != null && !sub.getSubGroups().isEmpty()) {
                throw ErrorResponse.error("subgroups go one level deep", Response.Status.BAD_REQUEST);
            }
            children.put(sub.getName(), makeGroup(group, sub, groupIds));
        }
        for (Map.Entry<String, List<String>> e : body.members.entrySet()) {
            GroupModel child = children.get(e.getKey());
            if (child == null) {
                throw ErrorResponse.error("members name no subgroup " + e.getKey(), Response.Status.BAD_REQUEST);
            }
            auth.groups().requireManageMembership(child);
            for (String id : e.getValue()) {
                UserModel user = id == null ? null : session.users().getUserById(realm, id);
                if (user == null) {
                    throw new NotFoundException("user " + id + " not found");
                }
                auth.users().requireManageGroupMembership(user);
                user.joinGroup(child);
                adminEvent.operation(OperationType.CREATE).resource(ResourceType.GROUP_MEMBERSHIP)
                        .resourcePath("users", user.getId(), "groups", child.getId())
                        .representation(Map.of("id", child.getId(), "name", child.getName(), "path", KeycloakModelUtils.buildGroupPath(child)))
                        .success();
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("roles", roleIds);
        out.put("groups", groupIds);
        return Response.status(Response.Status.CREATED).entity(out).build();
    }

    private GroupModel makeGroup(GroupModel parent, GroupRepresentation rep, Map<String, String> ids) {
        if (blank(rep.getName())) {
            throw ErrorResponse.error("a group has no name", Response.Status.BAD_REQUEST);
        }
        String path = KeycloakModelUtils.buildGroupPath(parent) + "/" + rep.getName();
        GroupModel g;
        try {
            g = realm.createGroup(rep.getName(), parent);
        } catch (ModelDuplicateException e) {
            throw ErrorResponse.exists("group " + path);
        }
        if (rep.getDescription() != null) {
            g.setDescription(rep.getDescription());
        }
        if (rep.getAttributes() != null) {
            rep.getAttributes().forEach(g::setAttribute);
        }
        ids.put(path, g.getId());
        adminEvent.operation(OperationType.CREATE).resource(ResourceType.GROUP)
                .resourcePath("groups", g.getId()).representation(rep).success();
        if (rep.getRealmRoles() != null && !rep.getRealmRoles().isEmpty()) {
            auth.groups().requireManage(g);
            for (String name : rep.getRealmRoles()) {
                RoleModel role = realm.getRole(name);
                if (role == null) {
                    throw ErrorResponse.error("realm role " + name + " not found", Response.Status.BAD_REQUEST);
                }
                auth.roles().requireMapRole(role);
                g.grantRole(role);
            }
            adminEvent.operation(OperationType.CREATE).resource(ResourceType.REALM_ROLE_MAPPING)
                    .resourcePath("groups", g.getId(), "role-mappings", "realm").representation(rep.getRealmRoles()).success();
        }
        return g;
    }

    /**
     * What {@code POST cleanup} removes: the artefacts of the names given
     * that carry marker. The caller describes them; this endpoint knows no
     * community.
     */
    public static class Removal {
        public String root;
        public String attribute;
        public String marker;
        /** The label group's name under root; its member groups go with it. */
        public String group;
        /** Realm roles to remove if marked; one unmarked is reported as foreign. */
        public List<String> roles = List.of();
        /** Realm roles to remove if marked; one unmarked is someone else's business now, not reported. */
        public List<String> legacyRoles = List.of();
        /** Policies of the admin-permissions client, in the order to remove them. */
        public List<String> policies = List.of();
        /** What a policy's description holds if it is marker's. */
        public String policyMarker;
        /** Client scopes to remove if marked; one unmarked is taken off clients instead. */
        public List<String> scopes = List.of();
        /** Clients (by clientId) to take an unmarked scope of scopes off. */
        public List<String> clients = List.of();
    }

    /**
     * Removes body's artefacts that carry its marker, in one call and one
     * transaction: either all of it is removed or, on any error, none.
     * Over the admin REST API that was 8 calls (a read, then one delete
     * each), and a failure between two of them left a half-removed
     * community for recovery to finish. Missing artefacts are skipped, so
     * it is idempotent: it undoes a half-made create or runs twice alike.
     * Policies go first, as over the REST API, since they name the groups;
     * an unmarked client scope of a scopes name is taken off clients (with
     * the community's roles gone it would have no role mapping, and
     * Keycloak would put it into every user's token); a group made by hand
     * under the community's groups is kept, with the groups above it
     * (see removeGroup). Each removal is
     * checked with the permission the admin REST API checks for it, and
     * recorded as the same admin event. Answers 200 with what was removed
     * and what was left as someone else's: {@code {"deleted": [...],
     * "foreign": [...]}}; a client of clients that does not exist is 404.
     * Artefacts are the marker's only when it is their one value (policies:
     * their whole description), so that a second value added by hand makes
     * them nobody's rather than another community's.
     *
     * <p>Any valid token of the realm reaches this resource, so the caller
     * must be able to manage the realm and every group before any name is
     * looked up: otherwise the answer (which names exist, which carry a
     * guessed marker) would tell anyone what the realm holds. The lists are
     * capped: a community has a handful of each.
     */
    @POST
    @Path("cleanup")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> cleanup(Removal body) {
        if (body == null || blank(body.root) || blank(body.attribute) || blank(body.marker) || blank(body.group)
                || blank(body.policyMarker) || body.roles == null || body.legacyRoles == null || body.policies == null
                || body.scopes == null || body.clients == null) {
            throw ErrorResponse.error("root, attribute, marker, group, policyMarker, roles, legacyRoles, policies, scopes and clients are required",
                    Response.Status.BAD_REQUEST);
        }
        auth.realm().requireManageRealm();
        auth.groups().requireManage();
        for (List<String> names : List.of(body.roles, body.legacyRoles, body.policies, body.scopes, body.clients)) {
            if (names.size() > MAX_NAMES || names.stream().anyMatch(CommunitiesResource::blank)) {
                throw ErrorResponse.error("at most " + MAX_NAMES + " names in each list, none blank", Response.Status.BAD_REQUEST);
            }
        }
        List<String> deleted = new ArrayList<>();
        List<String> foreign = new ArrayList<>();
        removePolicies(body, deleted, foreign);

        // By name at each level, as the admin API's group-by-path does: the
        // root's children are the realm's communities, never all read.
        GroupModel group = KeycloakModelUtils.findGroupByPath(session, realm, new String[] {body.root, body.group});
        if (group != null) {
            String path = "/" + body.root + "/" + body.group;
            if (!onlyValue(group.getAttributeStream(body.attribute), body.marker)) {
                foreign.add("group " + path);
            } else {
                auth.groups().requireManage(group);
                removeGroup(group, path, body, deleted, foreign);
            }
        }

        for (String name : concat(body.roles, body.legacyRoles)) {
            RoleModel role = realm.getRole(name);
            if (role == null) {
                continue;
            }
            if (!onlyValue(role.getAttributeStream(body.attribute), body.marker)) {
                if (body.roles.contains(name)) {
                    foreign.add("realm role " + name);
                }
                continue;
            }
            auth.roles().requireManage(role);
            realm.removeRole(role);
            adminEvent.operation(OperationType.DELETE).resource(ResourceType.REALM_ROLE)
                    .resourcePath("roles-by-id", role.getId()).representation(Map.of("id", role.getId(), "name", name)).success();
            deleted.add("realm role " + name);
        }

        for (String name : body.scopes) {
            ClientScopeModel scope = KeycloakModelUtils.getClientScopeByName(realm, name);
            if (scope == null) {
                continue;
            }
            if (!body.marker.equals(scope.getAttribute(body.attribute))) {
                // Somebody else's: taken off the FHIR clients only if it
                // maps no role, so would be in every token of theirs; one
                // with a role mapping is only in its holders' and stays.
                boolean open = scope.getScopeMappingsStream().findAny().isEmpty();
                List<String> takenOff = new ArrayList<>();
                for (String clientId : open ? body.clients : List.<String>of()) {
                    ClientModel client = realm.getClientByClientId(clientId);
                    if (client == null) {
                        throw new NotFoundException("client " + clientId + " not found");
                    }
                    if (!client.getClientScopes(true).containsKey(name) && !client.getClientScopes(false).containsKey(name)) {
                        continue;
                    }
                    auth.clients().requireConfigure(client);
                    client.removeClientScope(scope);
                    takenOff.add(clientId);
                    adminEvent.operation(OperationType.DELETE).resource(ResourceType.CLIENT)
                            .resourcePath("clients", client.getId(), "default-client-scopes", scope.getId())
                            .representation(Map.of("id", scope.getId(), "name", name)).success();
                }
                foreign.add("client scope " + name + (takenOff.isEmpty() ? "" : " (taken off " + String.join(", ", takenOff) + ")"));
                continue;
            }
            auth.clients().requireManage(scope);
            try {
                // Keycloak takes a removed scope off the clients using it.
                realm.removeClientScope(scope.getId());
            } catch (ModelException e) {
                throw ErrorResponse.error("client scope " + name + ": " + e.getMessage(), Response.Status.CONFLICT);
            }
            adminEvent.operation(OperationType.DELETE).resource(ResourceType.CLIENT_SCOPE)
                    .resourcePath("client-scopes", scope.getId()).representation(Map.of("id", scope.getId(), "name", name)).success();
            deleted.add("client scope " + name);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("deleted", deleted);
        out.put("foreign", foreign);
        return out;
    }

    /**
     * Removes group, which carries body's marker, with its member groups;
     * members lose the membership, users stay. A group under it that does
     * not carry the marker was made there by hand: removing it would
     * remove somebody else's group with its members and roles. It is kept,
     * and so is every group above it, which stops being the community's:
     * it loses the marker, so that no clean-up or orphan search takes it
     * for the community's again, and every role mapping, which the groups
     * under it would otherwise pass on to their members (an owner group's
     * community-owner role opens the admin console). Both are listed in
     * foreign.
     */
    private void removeGroup(GroupModel group, String path, Removal body, List<String> deleted, List<String> foreign) {
        if (wholeTreeMarked(group, body)) {
            realm.removeGroup(group);
            adminEvent.operation(OperationType.DELETE).resource(ResourceType.GROUP)
                    .resourcePath("groups", group.getId()).representation(Map.of("id", group.getId(), "path", path)).success();
            deleted.add("group " + path);
            return;
        }
        for (GroupModel sub : group.getSubGroupsStream().toList()) {
            String subPath = path + "/" + sub.getName();
            if (onlyValue(sub.getAttributeStream(body.attribute), body.marker)) {
                removeGroup(sub, subPath, body, deleted, foreign);
            } else {
                foreign.add("group " + subPath);
            }
        }
        group.removeAttribute(body.attribute);
        group.getRoleMappingsStream().toList().forEach(group::deleteRoleMapping);
        adminEvent.operation(OperationType.UPDATE).resource(ResourceType.GROUP)
                .resourcePath("groups", group.getId()).representation(Map.of("id", group.getId(), "path", path)).success();
        foreign.add("group " + path);
    }

    /** Whether group and every group under it carry body's marker as their one value. */
    private static boolean wholeTreeMarked(GroupModel group, Removal body) {
        return onlyValue(group.getAttributeStream(body.attribute), body.marker)
                && group.getSubGroupsStream().allMatch(sub -> wholeTreeMarked(sub, body));
    }

    /** Removes body's policies that carry its policy marker, when the realm's admin permissions are on. */
    private void removePolicies(Removal body, List<String> deleted, List<String> foreign) {
        ClientModel admin = realm.getAdminPermissionsClient();
        if (body.policies.isEmpty() || !realm.isAdminPermissionsEnabled() || admin == null) {
            return;
        }
        AuthorizationProvider authz = session.getProvider(AuthorizationProvider.class);
        ResourceServer rs = authz.getStoreFactory().getResourceServerStore().findByClient(admin);
        if (rs == null) {
            return;
        }
        PolicyStore store = authz.getStoreFactory().getPolicyStore();
        for (String name : body.policies) {
            Policy p = store.findByName(rs, name);
            if (p == null) {
                continue;
            }
            if (!body.policyMarker.equals(p.getDescription())) {
                foreign.add("admin permission " + name);
                continue;
            }
            auth.realm().requireManageAuthorization(rs);
            PolicyProviderFactory<?> provider = authz.getProviderFactory(p.getType());
            if (provider != null) {
                provider.onRemove(p, authz);
            }
            String id = p.getId();
            store.delete(id);
            adminEvent.operation(OperationType.DELETE).resource(ResourceType.AUTHORIZATION_POLICY)
                    .resourcePath("clients", admin.getId(), "authz", "resource-server", "policy", id)
                    .representation(Map.of("id", id, "name", name)).success();
            deleted.add("admin permission " + name);
        }
    }

    /** Names a cleanup list may hold: a community has at most 4 of any kind. */
    private static final int MAX_NAMES = 32;

    /** Whether values is exactly one value, marker. */
    private static boolean onlyValue(Stream<String> values, String marker) {
        List<String> all = values.limit(2).toList();
        return all.size() == 1 && marker.equals(all.get(0));
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    /** A page of the drift check: the communities of labels; each list required. */
    public static class Page {
        public String root;
        public String attribute;
        public List<String> labels;
        /** The realm roles to read, by name. */
        public List<String> roles;
        /** The policies to read, by name. */
        public List<String> policies;
    }

    /** Labels a page may name: a drift check pages by a few hundred. */
    private static final int MAX_PAGE = 1000;

    /**
     * A page of the drift check: the groups of body's labels and their
     * member groups, the realm roles of the names given, without ids, and
     * what the policies of the names given say. Paged so that no single answer holds Keycloak for long:
     * at 10,000 communities one answer for all of them took 0.9 s of a core.
     */
    @POST
    @Path("survey")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> surveyPage(Page body) {
        requireSurvey();
        if (body == null || blank(body.root) || blank(body.attribute) || body.labels == null || body.roles == null
                || body.policies == null) {
            throw ErrorResponse.error("root, attribute, labels, roles and policies are required", Response.Status.BAD_REQUEST);
        }
        if (body.labels.size() > MAX_PAGE || body.roles.size() > 8 * MAX_PAGE || body.policies.size() > 8 * MAX_PAGE) {
            throw ErrorResponse.error("at most " + MAX_PAGE + " labels, and 8 roles and 8 policies for each, a page",
                    Response.Status.BAD_REQUEST);
        }
        EntityManager em = em();
        // The page's groups by id, for the policies that name them.
        Map<String, String> paths = new HashMap<>();
        List<Map<String, Object>> groups = groups(em, body.root, body.labels, body.attribute, paths);
        return answer(roles(em, body.attribute, body.roles), groups,
                admin -> policiesByName(em, admin, body.policies, id -> paths.containsKey(id) ? paths.get(id) : groupPath(id)));
    }

    /**
     * The groups directly under root with their markers ({@code name},
     * {@code path}, {@code attributes}): for the drift check to find groups
     * that no community owns.
     */
    @GET
    @Path("groups")
    @Produces(MediaType.APPLICATION_JSON)
    public List<Map<String, Object>> labelGroups(@QueryParam("root") String root, @QueryParam("attribute") String attribute) {
        requireSurvey();
        if (blank(root) || blank(attribute)) {
            throw ErrorResponse.error("root and attribute are required", Response.Status.BAD_REQUEST);
        }
        EntityManager em = em();
        String rootId = rootId(em, root);
        if (rootId == null) {
            return List.of();
        }
        Map<String, Map<String, Object>> byName = new LinkedHashMap<>();
        for (Object[] row : em.createQuery(
                "select g.name, a.value from GroupEntity g left join g.attributes a on a.name = :attribute"
                        + " where g.parentId = :root", Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("root", rootId)
                .getResultList()) {
            String name = (String) row[0];
            addAttribute(byName.computeIfAbsent(name, n -> representation(n, "/" + root + "/" + n)), attribute, (String) row[1]);
        }
        return new ArrayList<>(byName.values());
    }

    /**
     * What the policies and permissions of the admin-permissions client of
     * the names given say: {@code adminPermissions} (whether the realm's
     * admin permissions are on) and {@code policies}, each with
     * {@code id}, {@code name}, {@code description}, {@code type},
     * {@code logic}, {@code decisionStrategy}, {@code resourceType},
     * {@code fetchRoles}, {@code groupsClaim} and the sorted lists {@code roles} (realm roles),
     * {@code clientRoles}, {@code groups}, {@code policies}, {@code scopes}
     * and {@code resources}. Each is named as the service names it in its
     * own description, never by id: a role by name (a client's as
     * {@code client/role}), a group by path, and a resource that is a group
     * as {@code "group "} and its path; {@code " (required)"} and
     * {@code " (and subgroups)"} follow where set, and what names nothing
     * that exists is {@code "?"} and the id. The realm-wide policies are found by name
     * alone, so one someone else made or changed would grant, through
     * every community's permissions, what the service never meant: the
     * service compares them whenever it relies on them.
     */
    @GET
    @Path("policies")
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> policyContents(@QueryParam("name") List<String> names) {
        requireSurvey();
        if (names == null || names.isEmpty() || names.size() > MAX_NAMES || names.stream().anyMatch(CommunitiesResource::blank)) {
            throw ErrorResponse.error("1 to " + MAX_NAMES + " names, none blank", Response.Status.BAD_REQUEST);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        List<Map<String, Object>> policies = new ArrayList<>();
        ClientModel admin = realm.getAdminPermissionsClient();
        boolean on = realm.isAdminPermissionsEnabled() && admin != null;
        out.put("adminPermissions", on);
        out.put("policies", policies);
        if (!on) {
            return out;
        }
        AuthorizationProvider authz = session.getProvider(AuthorizationProvider.class);
        ResourceServer rs = authz.getStoreFactory().getResourceServerStore().findByClient(admin);
        if (rs == null) {
            return out;
        }
        auth.realm().requireViewAuthorization(rs);
        PolicyStore store = authz.getStoreFactory().getPolicyStore();
        for (String name : names) {
            Policy p = store.findByName(rs, name);
            if (p != null) {
                policies.add(content(p));
            }
        }
        return out;
    }

    /** What {@code POST policies/link} changes. */
    public static class Link {
        /** The policy to add, by name. */
        public String policy;
        /** The aggregate policies to add it to, each as the caller last read it. */
        public List<Aggregate> aggregates;
    }

    /** An aggregate policy as the caller expects to find it. */
    public static class Aggregate {
        public String name;
        public String description;
        public String decisionStrategy;
        /** The policies it names now, by name. */
        public List<String> policies;
    }

    /**
     * Adds one policy to many aggregate policies of the admin-permissions
     * client: {@code {"linked": [names]}}. Keycloak takes a deleted policy
     * out of every aggregate that names it, so when the service makes a
     * realm-wide policy again (service desk's, which every community's
     * aggregate names) each community's aggregate must name it again: over
     * the admin API a read and a write a community, 20,000 calls at 10,000
     * communities; here one call a page. An aggregate is changed only if it
     * is still exactly as the caller read it (type, description, logic
     * positive, decision strategy, the policies it names); any other is
     * left out of the answer, for the caller to look at again. The policy
     * added may not be an aggregate (none could then name itself through
     * it). Needs the right to manage the admin permissions, checked before
     * any policy is looked up.
     */
    @POST
    @Path("policies/link")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> link(Link body) {
        if (body == null || blank(body.policy) || body.aggregates == null || body.aggregates.size() > MAX_PAGE) {
            throw ErrorResponse.error("policy and at most " + MAX_PAGE + " aggregates are required", Response.Status.BAD_REQUEST);
        }
        for (Aggregate a : body.aggregates) {
            if (a == null || blank(a.name) || a.description == null || blank(a.decisionStrategy) || a.policies == null
                    || a.policies.size() > MAX_NAMES || a.policies.stream().anyMatch(CommunitiesResource::blank)) {
                throw ErrorResponse.error("each aggregate needs a name, a description, a decisionStrategy and at most "
                        + MAX_NAMES + " policies, none blank", Response.Status.BAD_REQUEST);
            }
        }
        ClientModel admin = realm.getAdminPermissionsClient();
        AuthorizationProvider authz = session.getProvider(AuthorizationProvider.class);
        ResourceServer rs = admin == null ? null : authz.getStoreFactory().getResourceServerStore().findByClient(admin);
        if (!realm.isAdminPermissionsEnabled() || rs == null) {
            throw ErrorResponse.error("the realm's admin permissions are off", Response.Status.CONFLICT);
        }
        auth.realm().requireManageAuthorization(rs);
        PolicyStore store = authz.getStoreFactory().getPolicyStore();
        Policy added = store.findByName(rs, body.policy);
        if (added == null || "aggregate".equals(added.getType())) {
            throw ErrorResponse.error("no policy " + body.policy + " that is not an aggregate", Response.Status.CONFLICT);
        }
        List<String> linked = new ArrayList<>();
        for (Aggregate a : body.aggregates) {
            Policy p = store.findByName(rs, a.name);
            if (p == null || !"aggregate".equals(p.getType()) || !a.description.equals(p.getDescription())
                    || p.getLogic() != Logic.POSITIVE || !a.decisionStrategy.equals(String.valueOf(p.getDecisionStrategy()))
                    || !sorted(p.getAssociatedPolicies().stream().map(Policy::getName)).equals(sorted(a.policies))) {
                continue;
            }
            p.addAssociatedPolicy(added);
            adminEvent.operation(OperationType.UPDATE).resource(ResourceType.AUTHORIZATION_POLICY)
                    .resourcePath("clients", admin.getId(), "authz", "resource-server", "policy", p.getId())
                    .representation(Map.of("id", p.getId(), "name", a.name, "addedPolicy", body.policy)).success();
            linked.add(a.name);
        }
        return Map.of("linked", linked);
    }

    /** What {@code POST roles/grant} changes. */
    public static class Grant {
        /** The realm role to map, by name. */
        public String role;
        public String root;
        public String attribute;
        /** The groups to map it to, each as the caller last read it. */
        public List<MarkedGroup> groups;
    }

    /** A member group of a community ({@code /root/label/member}) and the one marker it carries. */
    public static class MarkedGroup {
        public String path;
        public String marker;
    }

    /**
     * Maps one realm role to many member groups of communities:
     * {@code {"granted": [paths]}}. Keycloak takes a deleted role off every
     * group that maps it, so when an administrator makes the realm's
     * {@code community-owner} again every community's owner group must map
     * it again: over the admin API a read and a write a community, 20,000
     * calls at 10,000 communities; here one call a page, the groups and
     * their markers read in three queries. A group is changed only if it is still
     * as the caller read it: there, carrying exactly the one marker given,
     * and not mapping the role; any other is left out of the answer. Needs
     * the right to manage every group and to map the role, checked before
     * any group is looked up.
     */
    @POST
    @Path("roles/grant")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> grant(Grant body) {
        if (body == null || blank(body.role) || blank(body.root) || blank(body.attribute) || body.groups == null
                || body.groups.size() > MAX_PAGE) {
            throw ErrorResponse.error("role, root, attribute and at most " + MAX_PAGE + " groups are required",
                    Response.Status.BAD_REQUEST);
        }
        // Each path is /root/label/member: found by label under root.
        String prefix = "/" + body.root + "/";
        List<String> labels = new ArrayList<>();
        for (MarkedGroup g : body.groups) {
            String[] parts = g == null || blank(g.marker) || g.path == null || !g.path.startsWith(prefix) ? null
                    : g.path.substring(prefix.length()).split("/", -1);
            if (parts == null || parts.length != 2 || blank(parts[0]) || blank(parts[1])) {
                throw ErrorResponse.error("each group needs a marker and a path " + prefix + "<label>/<member>",
                        Response.Status.BAD_REQUEST);
            }
            labels.add(parts[0]);
        }
        auth.groups().requireManage();
        RoleModel role = realm.getRole(body.role);
        if (role == null) {
            throw ErrorResponse.error("no realm role " + body.role, Response.Status.CONFLICT);
        }
        auth.roles().requireMapRole(role);
        EntityManager em = em();
        String rootId = labels.isEmpty() ? null : rootId(em, body.root);
        if (rootId == null) {
            return Map.of("granted", List.of());
        }
        // The member groups of labels by path, in one query.
        Map<String, String> ids = new HashMap<>();
        for (Object[] row : em.createQuery(
                "select g.id, l.name, g.name from GroupEntity g, GroupEntity l"
                        + " where g.parentId = l.id and l.parentId = :root and l.name in :labels", Object[].class)
                .setParameter("root", rootId).setParameter("labels", labels).getResultList()) {
            ids.put(prefix + row[1] + "/" + row[2], (String) row[0]);
        }
        if (ids.isEmpty()) {
            return Map.of("granted", List.of());
        }
        // Their markers, locked until this transaction ends: a delete's
        // cleanup that keeps a group (one made by hand below it) takes its
        // marker off, then its role mappings. Read under the lock, a group
        // that cleanup is taking its marker off is seen without it once
        // cleanup commits, and a cleanup that comes after waits, then takes
        // the role mapped here off with the rest.
        Map<String, List<String>> markers = new HashMap<>();
        for (GroupAttributeEntity a : em.createQuery(
                "select a from GroupAttributeEntity a where a.name = :attribute and a.group.id in :ids", GroupAttributeEntity.class)
                .setParameter("attribute", body.attribute).setParameter("ids", ids.values())
                .setLockMode(LockModeType.PESSIMISTIC_WRITE).getResultList()) {
            markers.computeIfAbsent(a.getGroup().getId(), k -> new ArrayList<>()).add(a.getValue());
        }
        List<String> granted = new ArrayList<>();
        for (MarkedGroup want : body.groups) {
            String id = ids.get(want.path);
            if (id == null || !List.of(want.marker).equals(markers.get(id))) {
                continue;
            }
            GroupModel g = realm.getGroupById(id);
            if (g == null || g.hasDirectRole(role)) {
                continue;
            }
            g.grantRole(role);
            adminEvent.operation(OperationType.CREATE).resource(ResourceType.REALM_ROLE_MAPPING)
                    .resourcePath("groups", g.getId(), "role-mappings", "realm")
                    .representation(List.of(ModelToRepresentation.toBriefRepresentation(role))).success();
            granted.add(want.path);
        }
        return Map.of("granted", granted);
    }

    /** What p says, as {@code GET policies} answers it. */
    private Map<String, Object> content(Policy p) {
        return content(p.getId(), p.getName(), p.getDescription(), p.getType(), p.getLogic(), p.getDecisionStrategy(),
                p.getConfig(), p.getAssociatedPolicies().stream().map(Policy::getName).toList(),
                p.getScopes().stream().map(Scope::getName).toList(), p.getResources().stream().map(Resource::getName).toList(),
                this::groupPath);
    }

    /**
     * What a policy says, from its parts (the names of the policies it
     * names, of its scopes and of its resources), as {@code GET policies}
     * and the survey answer it; groupPath is the path of a group's id, or
     * null if there is none.
     */
    private Map<String, Object> content(String id, String name, String description, String type, Object logic,
            Object decisionStrategy, Map<String, String> config, Collection<String> associated, Collection<String> scopes,
            Collection<String> resources, Function<String, String> groupPath) {
        config = config == null ? Map.of() : config;
        String resourceType = config.getOrDefault("defaultResourceType", "");
        Map<String, Object> rep = new LinkedHashMap<>();
        rep.put("id", id);
        rep.put("name", name);
        rep.put("description", description == null ? "" : description);
        rep.put("type", type);
        rep.put("logic", String.valueOf(logic));
        rep.put("decisionStrategy", String.valueOf(decisionStrategy));
        rep.put("resourceType", resourceType);
        rep.put("fetchRoles", Boolean.parseBoolean(config.get("fetchRoles")));
        rep.put("groupsClaim", config.getOrDefault("groupsClaim", ""));
        List<String> realmRoles = new ArrayList<>();
        List<String> clientRoles = new ArrayList<>();
        for (Map<String, Object> e : entries(config.get("roles"), realmRoles)) {
            RoleModel role = realm.getRoleById(String.valueOf(e.get("id")));
            String mark = flagged(e, "required", " (required)");
            if (role == null) {
                realmRoles.add("?" + e.get("id") + mark);
            } else if (role.isClientRole()) {
                clientRoles.add(((ClientModel) role.getContainer()).getClientId() + "/" + role.getName() + mark);
            } else {
                realmRoles.add(role.getName() + mark);
            }
        }
        rep.put("roles", sorted(realmRoles));
        rep.put("clientRoles", sorted(clientRoles));
        List<String> groups = new ArrayList<>();
        for (Map<String, Object> e : entries(config.get("groups"), groups)) {
            String path = groupPath.apply(String.valueOf(e.get("id")));
            groups.add((path == null ? "?" + e.get("id") : path) + flagged(e, "extendChildren", " (and subgroups)"));
        }
        rep.put("groups", sorted(groups));
        rep.put("policies", sorted(associated));
        rep.put("scopes", sorted(scopes));
        rep.put("resources", sorted(resources.stream().map(r -> {
            String path = r.equals(resourceType) ? null : groupPath.apply(r);
            return path == null ? r : "group " + path;
        })));
        return rep;
    }

    /**
     * The entries of a policy's JSON list raw (each an {@code id} and a
     * flag); a list that cannot be read adds an entry saying so to out, so
     * that it never matches, and has none.
     */
    private static List<Map<String, Object>> entries(String raw, List<String> out) {
        if (raw == null || raw.isBlank()) {
            return List.of();
        }
        try {
            return JsonSerialization.readValue(raw, new com.fasterxml.jackson.core.type.TypeReference<List<Map<String, Object>>>() {});
        } catch (java.io.IOException | RuntimeException e) {
            out.add("(unreadable: " + raw + ")");
            return List.of();
        }
    }

    /** mark if entry e's flag is set, else nothing. */
    private static String flagged(Map<String, Object> e, String flag, String mark) {
        return Boolean.parseBoolean(String.valueOf(e.get(flag))) ? mark : "";
    }

    /** The path of the group of id, or null if there is none. */
    private String groupPath(String id) {
        GroupModel g = realm.getGroupById(id);
        return g == null ? null : KeycloakModelUtils.buildGroupPath(g);
    }

    private static List<String> sorted(Collection<String> c) {
        return c.stream().sorted().toList();
    }

    private static List<String> sorted(Stream<String> s) {
        return s.sorted().toList();
    }

    /** What {@code POST members} reads. */
    public static class MemberQuery {
        /** Ids of the groups whose direct members to list. */
        public List<String> groups;
        /** The most members the answer may hold, over all groups. */
        public int max;
    }

    /** Groups {@code POST members} reads a call, and members it answers. */
    private static final int MAX_MEMBER_GROUPS = 1500;
    private static final int MAX_MEMBERS = 50000;

    /**
     * The direct members of many groups ({@code id}, {@code username},
     * {@code enabled}),
     * through Keycloak's user storage as the admin API lists them (federated
     * users included): {@code {"members": {groupId: [...]}, "missing":
     * [ids], "more": [ids]}}. A group that does not exist is in
     * {@code missing}; once body.max members are answered, the groups not
     * yet read (and the one whose members did not fit, whole) are in
     * {@code more}, for the caller to ask again. Three member groups a
     * community, a plan of 10,000 communities read 30,000 pages over the
     * admin API; here it is 20 calls. Needs {@code view-realm} and the right
     * to view every group and user, checked before any lookup.
     */
    @POST
    @Path("members")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> members(MemberQuery body) {
        requireSurvey();
        auth.users().requireView();
        if (body == null || body.groups == null || body.max < 1) {
            throw ErrorResponse.error("groups and max are required", Response.Status.BAD_REQUEST);
        }
        if (body.groups.size() > MAX_MEMBER_GROUPS || body.max > MAX_MEMBERS) {
            throw ErrorResponse.error("at most " + MAX_MEMBER_GROUPS + " groups and " + MAX_MEMBERS + " members a call",
                    Response.Status.BAD_REQUEST);
        }
        Map<String, List<Map<String, Object>>> members = new LinkedHashMap<>();
        List<String> missing = new ArrayList<>();
        List<String> more = new ArrayList<>();
        int left = body.max;
        for (String id : body.groups) {
            if (blank(id)) {
                throw ErrorResponse.error("a group id is blank", Response.Status.BAD_REQUEST);
            }
            if (!more.isEmpty()) {
                more.add(id);
                continue;
            }
            GroupModel group = realm.getGroupById(id);
            if (group == null) {
                missing.add(id);
                continue;
            }
            // One more than fits tells a group that does not fit.
            List<Map<String, Object>> page = session.users().getGroupMembersStream(realm, group, 0, left + 1).map(u -> {
                Map<String, Object> rep = new LinkedHashMap<>();
                rep.put("id", u.getId());
                rep.put("username", u.getUsername());
                rep.put("enabled", u.isEnabled());
                return rep;
            }).toList();
            if (page.size() > left) {
                more.add(id);
                continue;
            }
            left -= page.size();
            members.put(id, page);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("members", members);
        out.put("missing", missing);
        out.put("more", more);
        return out;
    }

    /**
     * Every marker on the realm's roles and on the admin-permissions
     * client's policies whose names begin with policyPrefix, one entry per
     * marker (roles: {@code name}, {@code marker}; policies: {@code name},
     * {@code description}, which holds the marker): for the drift check to
     * find roles and permissions that no community owns, whose group may be
     * gone. One row per marker keeps the answer to about 150 bytes a
     * community.
     */
    @GET
    @Path("marked")
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> marked(@QueryParam("attribute") String attribute, @QueryParam("policyPrefix") String policyPrefix) {
        requireSurvey();
        if (blank(attribute) || blank(policyPrefix)) {
            throw ErrorResponse.error("attribute and policyPrefix are required", Response.Status.BAD_REQUEST);
        }
        EntityManager em = em();
        List<Map<String, Object>> roles = new ArrayList<>();
        for (Object[] row : em.createQuery(
                "select a.value, min(r.name) from RoleEntity r join r.attributes a where a.name = :attribute"
                        + " and r.realmId = :realm and r.clientRole = false group by a.value", Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("realm", realm.getId())
                .getResultList()) {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("name", row[1]);
            r.put("marker", row[0]);
            roles.add(r);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("roles", roles);
        ClientModel admin = realm.getAdminPermissionsClient();
        boolean on = realm.isAdminPermissionsEnabled() && admin != null;
        out.put("adminPermissions", on);
        List<Map<String, Object>> policies = new ArrayList<>();
        if (on) {
            for (Object[] row : em.createQuery(
                    "select p.description, min(p.name) from PolicyEntity p where p.resourceServer.id = :rs"
                            + " and p.name like :prefix escape '\\' and p.description is not null group by p.description", Object[].class)
                    .setParameter("rs", admin.getId())
                    .setParameter("prefix", policyPrefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
                    .getResultList()) {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("name", row[1]);
                p.put("description", row[0]);
                policies.add(p);
            }
        }
        out.put("policies", policies);
        return out;
    }

    /**
     * Which of the realm roles named (role, repeated) user holds now, as
     * Keycloak decides for a token: directly, through a group or through a
     * composite. The admin API's effective role mappings test every role of
     * the realm against the user, and a realm of 10,000 communities has
     * 20,000; this tests the few named. An unknown or disabled user holds
     * none: a token outlives the user's disabling, and what this answers is
     * what Keycloak would grant now.
     */
    @GET
    @Path("held")
    @Produces(MediaType.APPLICATION_JSON)
    public List<String> held(@QueryParam("user") String userId, @QueryParam("role") List<String> roleNames) {
        if (blank(userId) || roleNames == null || roleNames.isEmpty()) {
            throw ErrorResponse.error("user and role are required", Response.Status.BAD_REQUEST);
        }
        if (roleNames.size() > 8) {
            throw ErrorResponse.error("at most 8 roles", Response.Status.BAD_REQUEST);
        }
        UserModel user = session.users().getUserById(realm, userId);
        if (user == null) {
            auth.users().requireView();
            return List.of();
        }
        auth.users().requireView(user);
        List<String> out = new ArrayList<>();
        if (!user.isEnabled()) {
            return out;
        }
        for (String name : roleNames) {
            RoleModel role = blank(name) ? null : realm.getRole(name);
            if (role != null && user.hasRole(role)) {
                out.add(name);
            }
        }
        return out;
    }

    private void requireSurvey() {
        auth.realm().requireViewRealm();
        auth.groups().requireView();
    }

    private EntityManager em() {
        return session.getProvider(JpaConnectionProvider.class).getEntityManager();
    }

    /**
     * The survey's answer: roles, groups, whether the realm's admin
     * permissions are on, the policies policies reads from the
     * admin-permissions client (when they are), and the client scopes.
     */
    private Map<String, Object> answer(List<Map<String, Object>> roles, List<Map<String, Object>> groups,
            Function<String, List<Map<String, Object>>> policies) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("roles", roles);
        out.put("groups", groups);
        ClientModel admin = realm.getAdminPermissionsClient();
        boolean on = realm.isAdminPermissionsEnabled() && admin != null;
        out.put("adminPermissions", on);
        if (on) {
            ResourceServer rs = session.getProvider(AuthorizationProvider.class).getStoreFactory().getResourceServerStore()
                    .findByClient(admin);
            if (rs != null) {
                auth.realm().requireViewAuthorization(rs);
            }
        }
        out.put("policies", on ? policies.apply(admin.getId()) : List.of());
        // A realm has a handful of client scopes, all in Keycloak's cache.
        out.put("clientScopes", realm.getClientScopesStream().map(sc -> {
            Map<String, Object> rep = new LinkedHashMap<>();
            rep.put("id", sc.getId());
            rep.put("name", sc.getName());
            rep.put("attributes", sc.getAttributes());
            return rep;
        }).toList());
        return out;
    }

    /** The realm roles of names. */
    private List<Map<String, Object>> roles(EntityManager em, String attribute, List<String> names) {
        if (names.isEmpty()) {
            return List.of();
        }
        Map<String, Map<String, Object>> byName = new LinkedHashMap<>();
        var query = em.createQuery(
                "select r.name, a.value from RoleEntity r left join r.attributes a on a.name = :attribute"
                        + " where r.realmId = :realm and r.clientRole = false and r.name in :names",
                Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("realm", realm.getId())
                .setParameter("names", names);
        for (Object[] row : query.getResultList()) {
            Map<String, Object> role = byName.computeIfAbsent((String) row[0], name -> representation(name, null));
            addAttribute(role, attribute, (String) row[1]);
        }
        return new ArrayList<>(byName.values());
    }

    /** The id of the top-level group root, or null. */
    private String rootId(EntityManager em, String root) {
        List<String> ids = em.createQuery(
                "select g.id from GroupEntity g where g.realm = :realm and g.parentId = :top and g.name = :root"
                        + " and g.type = 0", String.class)
                .setParameter("realm", realm.getId())
                .setParameter("top", GroupEntity.TOP_PARENT_ID)
                .setParameter("root", root)
                .getResultList();
        return ids.isEmpty() ? null : ids.get(0);
    }

    /**
     * The groups of labels directly under root, and their member groups;
     * their paths by id go into paths.
     */
    private List<Map<String, Object>> groups(EntityManager em, String root, List<String> labels, String attribute,
            Map<String, String> paths) {
        String rootId = labels.isEmpty() ? null : rootId(em, root);
        if (rootId == null) {
            return List.of();
        }
        // Each group with its marker in one statement, so one snapshot: a
        // group deleted between two queries would look unmarked, someone
        // else's. Label groups first, so each member group finds its
        // parent's path.
        var query = em.createQuery(
                "select g.id, g.name, g.parentId, a.value from GroupEntity g left join g.attributes a on a.name = :attribute"
                        + " where (g.parentId = :root and g.name in :labels)"
                        + " or g.parentId in (select l.id from GroupEntity l where l.parentId = :root and l.name in :labels)"
                        + " order by case when g.parentId = :root then 0 else 1 end", Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("root", rootId)
                .setParameter("labels", labels);
        Map<String, Map<String, Object>> byId = new LinkedHashMap<>();
        paths.put(rootId, "/" + root);
        for (Object[] row : query.getResultList()) {
            String id = (String) row[0];
            Map<String, Object> g = byId.get(id);
            if (g == null) {
                String parent = paths.get((String) row[2]);
                if (parent == null) {
                    continue; // its parent is not a label group
                }
                String path = parent + "/" + row[1];
                paths.put(id, path);
                g = representation((String) row[1], path);
                byId.put(id, g);
            }
            addAttribute(g, attribute, (String) row[3]);
        }
        if (byId.isEmpty()) {
            return List.of();
        }
        // Role mappings and groups below, read apart, may miss a group's
        // changed since: what they show is a suspicion the service
        // confirms, never a verdict. Client roles too: any role a
        // community's group maps that the community did not grant is
        // passed on to its members.
        var mappings = em.createQuery(
                "select m.group.id, r.name, r.clientRole, r.clientId from GroupRoleMappingEntity m, RoleEntity r"
                        + " where r.id = m.roleId and m.group.id in :ids", Object[].class)
                .setParameter("ids", byId.keySet());
        Map<String, String> clientIds = new HashMap<>();
        for (Object[] row : mappings.getResultList()) {
            Map<String, Object> g = byId.get((String) row[0]);
            if (g == null) {
                continue;
            }
            if (!(Boolean) row[2]) {
                @SuppressWarnings("unchecked")
                List<String> roles = (List<String>) g.computeIfAbsent("realmRoles", k -> new ArrayList<String>());
                roles.add((String) row[1]);
                continue;
            }
            String clientId = clientIds.computeIfAbsent((String) row[3], id -> {
                ClientModel client = realm.getClientById(id);
                return client == null ? id : client.getClientId();
            });
            @SuppressWarnings("unchecked")
            Map<String, List<String>> roles = (Map<String, List<String>>) g.computeIfAbsent("clientRoles",
                    k -> new LinkedHashMap<String, List<String>>());
            roles.computeIfAbsent(clientId, k -> new ArrayList<>()).add((String) row[1]);
        }
        // Groups under the member groups: their members hold the member
        // group's roles too.
        var below = em.createQuery(
                "select g.parentId, g.name from GroupEntity g where g.parentId in :ids and g.id not in :ids", Object[].class)
                .setParameter("ids", byId.keySet());
        for (Object[] row : below.getResultList()) {
            Map<String, Object> g = byId.get((String) row[0]);
            if (g != null) {
                @SuppressWarnings("unchecked")
                List<Map<String, Object>> subs = (List<Map<String, Object>>) g.computeIfAbsent("subGroups",
                        k -> new ArrayList<Map<String, Object>>());
                subs.add(Map.of("name", row[1], "path", g.get("path") + "/" + row[1]));
            }
        }
        return new ArrayList<>(byId.values());
    }

    /**
     * What the policies of the client resourceServer of names say, as
     * {@code GET policies} answers it, in five queries whatever their
     * number: through the model, each policy's config, policies, scopes and
     * resources are a query each, 40,000 policies at 10,000 communities.
     */
    private List<Map<String, Object>> policiesByName(EntityManager em, String resourceServer, List<String> names,
            Function<String, String> groupPath) {
        if (names.isEmpty()) {
            return List.of();
        }
        List<Object[]> rows = em.createQuery(
                "select p.id, p.name, p.description, p.type, p.logic, p.decisionStrategy from PolicyEntity p"
                        + " where p.resourceServer.id = :rs and p.name in :names", Object[].class)
                .setParameter("rs", resourceServer)
                .setParameter("names", names)
                .getResultList();
        if (rows.isEmpty()) {
            return List.of();
        }
        List<String> ids = rows.stream().map(row -> (String) row[0]).toList();
        Map<String, Map<String, String>> config = new HashMap<>();
        for (Object[] row : em.createQuery("select p.id, key(c), value(c) from PolicyEntity p join p.config c where p.id in :ids",
                Object[].class).setParameter("ids", ids).getResultList()) {
            config.computeIfAbsent((String) row[0], k -> new HashMap<>()).put((String) row[1], (String) row[2]);
        }
        Map<String, List<String>> associated = named(em, "associatedPolicies", ids);
        Map<String, List<String>> scopes = named(em, "scopes", ids);
        Map<String, List<String>> resources = named(em, "resources", ids);
        List<Map<String, Object>> out = new ArrayList<>(rows.size());
        for (Object[] row : rows) {
            String id = (String) row[0];
            out.add(content(id, (String) row[1], (String) row[2], (String) row[3], row[4], row[5], config.get(id),
                    associated.getOrDefault(id, List.of()), scopes.getOrDefault(id, List.of()),
                    resources.getOrDefault(id, List.of()), groupPath));
        }
        return out;
    }

    /** The names of what the policies of ids name in field (policies, scopes or resources), by policy id. */
    private static Map<String, List<String>> named(EntityManager em, String field, List<String> ids) {
        Map<String, List<String>> out = new HashMap<>();
        for (Object[] row : em.createQuery("select p.id, e.name from PolicyEntity p join p." + field + " e where p.id in :ids",
                Object[].class).setParameter("ids", ids).getResultList()) {
            out.computeIfAbsent((String) row[0], k -> new ArrayList<>()).add((String) row[1]);
        }
        return out;
    }

    private static Map<String, Object> representation(String name, String path) {
        Map<String, Object> rep = new LinkedHashMap<>();
        rep.put("name", name);
        if (path != null) {
            rep.put("path", path);
        }
        rep.put("attributes", new LinkedHashMap<String, List<String>>());
        return rep;
    }

    @SuppressWarnings("unchecked")
    private static void addAttribute(Map<String, Object> rep, String attribute, String value) {
        if (value != null) {
            ((Map<String, List<String>>) rep.get("attributes")).computeIfAbsent(attribute, k -> new ArrayList<>()).add(value);
        }
    }

    private static boolean blank(String s) {
        return s == null || s.isBlank();
    }
}
