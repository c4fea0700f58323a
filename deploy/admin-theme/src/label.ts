// The rules of internal/label (the service checks them again on every call), so
// that the form can show them and check them as the user types.

export const MAX_LABEL = 64;
export const MAX_NAME = 200;

/** Why s is not an acceptable security label, or "" if it is. */
export const labelProblem = (s: string): string => {
  if (s === "") return "Enter a security label.";
  if (s.length > MAX_LABEL) return `At most ${MAX_LABEL} characters.`;
  const bad = [...s].findIndex((c) => !/^[A-Za-z0-9_]$/.test(c));
  if (bad >= 0) {
    return `Only letters A-Z and a-z, digits and "_" (found "${[...s][bad]}" at position ${bad + 1}).`;
  }
  return "";
};

/** Why s is not an acceptable community name, or "" if it is. */
export const nameProblem = (s: string): string => {
  const name = s.trim();
  if (name === "") return "Enter a community name.";
  if ([...name].length > MAX_NAME) return `At most ${MAX_NAME} characters.`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(name)) return "No control characters.";
  return "";
};
