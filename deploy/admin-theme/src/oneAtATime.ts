import { useCallback, useRef, useState } from "react";

/**
 * Runs one action at a time and says when one runs. A double click (or
 * Enter and a click) reaches a handler twice before React draws its button
 * disabled, so busy alone cannot stop the second: a ref, set at once, does,
 * and a start while an action runs is dropped.
 */
export const useOneAtATime = (): [boolean, (action: () => Promise<void>) => Promise<void>] => {
  const running = useRef(false);
  const [busy, setBusy] = useState(false);
  const run = useCallback(async (action: () => Promise<void>) => {
    if (running.current) return;
    running.current = true;
    setBusy(true);
    try {
      await action();
    } finally {
      running.current = false;
      setBusy(false);
    }
  }, []);
  return [busy, run];
};
