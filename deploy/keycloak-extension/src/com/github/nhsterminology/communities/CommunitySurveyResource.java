package com.github.nhsterminology.communities;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import jakarta.persistence.EntityManager;
import jakarta.ws.rs.BadRequestException;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;

import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.jpa.entities.GroupEntity;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;

/**
 * {@code GET /admin/realms/{realm}/communities/survey}: what the realm holds
 * of communities, in one answer, for the service's drift check.
 *
 * <p>Why an endpoint of our own: the admin REST API reads groups, roles and
 * policies one entity at a time through Keycloak's cache, and at 10,000
 * communities (20,000 roles, 40,000 groups, 40,000 policies) the cache at its
 * default size holds few of them, so a pass over the REST API took 3.5
 * minutes, each group a few database queries. Here each kind is one query.
 *
 * <p>It reads and never writes, and says nothing about what a community
 * should be: the service compares the answer with its own description of a
 * community. The caller names the root group, the marker attribute and the
 * policy name prefix, so those too are said once, in the service. It needs
 * {@code view-realm} and the right to view every group.
 *
 * <p>The answer uses the admin API's own field names, so the service reads
 * it as it reads those representations: {@code roles} (every realm role:
 * {@code name}, {@code attributes} with the marker), {@code groups} (the
 * groups one and two levels under the root: {@code name}, {@code path},
 * {@code attributes} with the marker, {@code realmRoles}),
 * {@code adminPermissions} (whether the realm's admin permissions are on)
 * and {@code policies} (the admin-permissions client's policies whose name
 * begins with the prefix: {@code name}, {@code description}).
 */
public class CommunitySurveyResource {

    private final KeycloakSession session;
    private final RealmModel realm;
    private final AdminPermissionEvaluator auth;

    CommunitySurveyResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth) {
        this.session = session;
        this.realm = realm;
        this.auth = auth;
    }

    @GET
    @Path("survey")
    @Produces(MediaType.APPLICATION_JSON)
    public Map<String, Object> survey(@QueryParam("root") String root, @QueryParam("attribute") String attribute,
            @QueryParam("policyPrefix") String policyPrefix) {
        auth.realm().requireViewRealm();
        auth.groups().requireView();
        if (blank(root) || blank(attribute) || blank(policyPrefix)) {
            throw new BadRequestException("root, attribute and policyPrefix are required");
        }
        EntityManager em = session.getProvider(JpaConnectionProvider.class).getEntityManager();
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("roles", roles(em, attribute));
        out.put("groups", groups(em, root, attribute));
        ClientModel admin = realm.getAdminPermissionsClient();
        boolean on = realm.isAdminPermissionsEnabled() && admin != null;
        out.put("adminPermissions", on);
        out.put("policies", on ? policies(em, admin.getId(), policyPrefix) : List.of());
        return out;
    }

    private List<Map<String, Object>> roles(EntityManager em, String attribute) {
        Map<String, Map<String, Object>> byName = new LinkedHashMap<>();
        List<Object[]> rows = em.createQuery(
                "select r.name, a.value from RoleEntity r left join r.attributes a on a.name = :attribute"
                        + " where r.realmId = :realm and r.clientRole = false", Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("realm", realm.getId())
                .getResultList();
        for (Object[] row : rows) {
            Map<String, Object> role = byName.computeIfAbsent((String) row[0], name -> representation(name, null));
            addAttribute(role, attribute, (String) row[1]);
        }
        return new ArrayList<>(byName.values());
    }

    private List<Map<String, Object>> groups(EntityManager em, String root, String attribute) {
        List<String> rootIds = em.createQuery(
                "select g.id from GroupEntity g where g.realm = :realm and g.parentId = :top and g.name = :root"
                        + " and g.type = 0", String.class)
                .setParameter("realm", realm.getId())
                .setParameter("top", GroupEntity.TOP_PARENT_ID)
                .setParameter("root", root)
                .getResultList();
        if (rootIds.isEmpty()) {
            return List.of();
        }
        String rootId = rootIds.get(0);
        // Label groups first, so each member group finds its parent's path.
        List<Object[]> rows = em.createQuery(
                "select g.id, g.name, g.parentId from GroupEntity g where g.parentId = :root"
                        + " or g.parentId in (select l.id from GroupEntity l where l.parentId = :root)"
                        + " order by case when g.parentId = :root then 0 else 1 end", Object[].class)
                .setParameter("root", rootId)
                .getResultList();
        Map<String, Map<String, Object>> byId = new LinkedHashMap<>();
        Map<String, String> paths = new HashMap<>();
        paths.put(rootId, "/" + root);
        for (Object[] row : rows) {
            String parent = paths.get((String) row[2]);
            if (parent == null) {
                continue; // its parent is not a label group
            }
            String path = parent + "/" + row[1];
            paths.put((String) row[0], path);
            byId.put((String) row[0], representation((String) row[1], path));
        }
        List<Object[]> markers = em.createQuery(
                "select a.group.id, a.value from GroupAttributeEntity a where a.name = :attribute"
                        + " and a.group.realm = :realm", Object[].class)
                .setParameter("attribute", attribute)
                .setParameter("realm", realm.getId())
                .getResultList();
        for (Object[] row : markers) {
            Map<String, Object> g = byId.get((String) row[0]);
            if (g != null) {
                addAttribute(g, attribute, (String) row[1]);
            }
        }
        List<Object[]> mappings = em.createQuery(
                "select m.group.id, r.name from GroupRoleMappingEntity m, RoleEntity r"
                        + " where r.id = m.roleId and r.clientRole = false and m.group.realm = :realm", Object[].class)
                .setParameter("realm", realm.getId())
                .getResultList();
        for (Object[] row : mappings) {
            Map<String, Object> g = byId.get((String) row[0]);
            if (g != null) {
                @SuppressWarnings("unchecked")
                List<String> roles = (List<String>) g.computeIfAbsent("realmRoles", k -> new ArrayList<String>());
                roles.add((String) row[1]);
            }
        }
        return new ArrayList<>(byId.values());
    }

    private List<Map<String, Object>> policies(EntityManager em, String resourceServer, String prefix) {
        List<Object[]> rows = em.createQuery(
                "select p.name, p.description from PolicyEntity p where p.resourceServer.id = :rs"
                        + " and p.name like :prefix escape '\\'", Object[].class)
                .setParameter("rs", resourceServer)
                .setParameter("prefix", prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
                .getResultList();
        List<Map<String, Object>> out = new ArrayList<>(rows.size());
        for (Object[] row : rows) {
            Map<String, Object> p = new LinkedHashMap<>();
            p.put("name", row[0]);
            p.put("description", row[1] == null ? "" : row[1]);
            out.add(p);
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
